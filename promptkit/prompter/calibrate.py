"""A data-scaled prompt init: the random init rescaled to the tensors each prompt joins.

Used when ``PrompterConfig.init_scale == "data"``; :func:`calibrate_init` runs the frozen backbone
once on a training batch and measures, at the hook points, the scale the prompts are added to.
"""

from __future__ import annotations

import torch
from torch import nn

from ..hookspec import call_backbone, resolve_module


@torch.no_grad()
def calibrate_init(prompter: nn.Module, features: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scale the random init to the tensors the prompts join (``config.init_scale == "data"``).

    Runs the frozen backbone once on ``features`` (complete, e.g. one training batch ``(B, T_m,
    D_m)`` per modality) and measures, at the hook points, the RMS of each projected sequence
    (signal targets' outputs) and of each encoder input (type targets' sequence argument). Then
    the signal prompts are rescaled to ``init_std`` times their sequence's RMS, the type
    prompts so that their tokens have ``init_std`` times their encoder input's RMS, and MMGM's
    output layers so that generated features start at the real features' per-feature mean and
    ``init_std`` times their spread (a module entry's features: its extractor's output). Without this the prompts start 50-100x smaller than
    the tensors they are added to. Returns the measured RMS values.
    """
    features = prompter._check_features(dict(features))
    measured: dict[str, float] = {}
    handles = []

    def rms(x: torch.Tensor) -> float:
        return float(x.detach().float().pow(2).mean().sqrt())

    for m, target in prompter.spec.signal.items():
        module = resolve_module(prompter.backbone, target.path)
        handles.append(module.register_forward_hook(
            lambda mod, args, out, m=m: measured.__setitem__(f"signal.{m}", rms(out[0] if isinstance(out, tuple) else out))))
    for j, target in enumerate(prompter.spec.type):
        module = resolve_module(prompter.backbone, target.path)

        def pre(mod, args, kwargs, j=j, target=target):
            seq = kwargs[target.arg] if isinstance(target.arg, str) else args[target.arg]
            measured[f"type.{j}"] = rms(seq)

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
    was_training = prompter.training
    prompter.eval()
    try:
        with prompter.prompts_disabled():
            call_backbone(prompter.backbone, features, prompter.spec)
            if prompter.mmgm is not None and prompter.spec.feature_modules:  # MMGM's targets: the extractors' outputs
                features = {**features, **prompter._capture_features(prompter.spec.kwargs(features))[0]}
    finally:
        for h in handles:
            h.remove()
        prompter.train(was_training)
    std = prompter.config.init_std
    if prompter.signal_prompts is not None:
        for m in prompter.signal_prompts.widths:
            for table in (prompter.signal_prompts.real, prompter.signal_prompts.generated):
                p = table[m]
                p.mul_(std * measured.get(f"signal.{m}", 1.0) / max(rms(p), 1e-12))
    if prompter.type_prompts is not None:
        first = next(iter(features.values()))
        first = first[0] if isinstance(first, (tuple, list)) else first
        missing = ~prompter.modality_set.sample_masks(first.shape[0], 0.7, torch.Generator().manual_seed(0)).to(
            first.device)
        tokens = prompter.type_tokens(missing)
        for j, (p, tok) in enumerate(zip(prompter.type_prompts.type_prompts, tokens)):
            p.mul_(std * measured.get(f"type.{j}", 1.0) / max(rms(tok), 1e-12))
    if prompter.mmgm is not None:
        for m, x in features.items():
            valid = x.abs().amax(-1) > 0  # (B, T): padding steps are exactly 0
            rows = x[valid] if valid.any() else x.reshape(-1, x.shape[-1])
            mean, spread = rows.mean(0), rows.std(0).mean()
            last = prompter.mmgm.out_maps[m][-1]
            last.bias.copy_(mean)
            probe = torch.randn(256, prompter.mmgm.dim, generator=torch.Generator().manual_seed(0)).to(x.device)
            out = prompter.mmgm.out_maps[m](probe)  # a fixed probe: the init must not depend on the global RNG
            last.weight.mul_(std * float(spread) / max(float((out - mean).std()), 1e-12))
            measured[f"features.{m}"] = float(spread)
    return measured

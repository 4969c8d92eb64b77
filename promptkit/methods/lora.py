"""LoRA through ``peft`` on the frozen backbone, alone or with the MPLMM prompts.

Beyond the paper: the standard parameter-efficient alternative to prompts. Low-rank adapters are
injected (``peft.inject_adapter_in_model``) into the backbone's linear and pointwise-convolution
layers; the base weights stay bit-identical and frozen, and only the ``lora_`` tensors train,
together with the spec's trainable head (trained fully, as in the head-only control).

Two methods are registered:

- ``lora``: LoRA + the head, every prompt type off, zero substitution of missing inputs, trained
  at the recipe's ``[prompt] eta`` with the prompt-stage settings (the head-only control's loop,
  masks and evaluation, with the LoRA tensors trained too);
- ``lora_mplmm``: LoRA + the recipe's MPLMM prompts, trained the same way.

Both train through :func:`promptkit.train.prompt_stage.prompt_tune`: the LoRA tensors join the
hook spec's ``trainable`` modules (each adapted layer's ``lora_A``/``lora_B``), so the prompter
leaves them trainable when it freezes the backbone, the optimizer holds them, the best epoch's
weights restore them and the stage's adapter directory holds them. The LoRA tensors and the head
are also written alone, as a promptkit safetensors checkpoint of kind ``"lora-adapter"``
(:func:`save_lora_adapter`, :func:`load_lora_adapter`).

Which layers get LoRA (:func:`lora_target_modules`): every ``nn.Linear`` and every ``nn.Conv1d``
peft can wrap, in ``named_modules`` order, except those inside the spec's trainable modules (the
head) and those whose own ``forward`` never runs in a forward pass. MulT's input projections are
``PointwiseConv1d`` s, whose constructor peft cannot call for the low-rank pair, so they stay
without LoRA. The last rule matters for MulT: its
cross-attention reads the fused q/k/v projection's weight slices directly
(``F.linear(query, in_proj.weight[:E], ...)``), so a LoRA there would never reach the output; the
self-attention of the memory transformers calls ``in_proj`` and keeps it.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import TrainedMethod, register_method

LORA_KIND = "lora-adapter"
ADAPTER_FILE = "lora_adapter.safetensors"
ADAPTER_NAME = "default"
_LORA_PARTS = ("lora_A", "lora_B")
_TARGET_TYPES = (nn.Linear, nn.Conv1d)


# --- which layers -----------------------------------------------------------------------------------
def _spec(backbone: nn.Module, hooks: Any = None):
    from ..hookspec import HookSpec, hook_spec_for

    if hooks is None:
        return hook_spec_for(backbone)
    return hooks if isinstance(hooks, HookSpec) else HookSpec.from_dict(dict(hooks))


def _is_lora_path(path: str) -> bool:
    return path.rsplit(".", 1)[-1] in _LORA_PARTS


def _inside(name: str, paths: Sequence[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in paths)


def has_lora(backbone: nn.Module) -> bool:
    """Whether ``backbone`` already holds peft LoRA layers."""
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in backbone.modules())


def _example_inputs(backbone: nn.Module, spec: Any, steps: int = 4, batch: int = 2) -> dict[str, torch.Tensor] | None:
    dims = getattr(backbone, "feature_dims", None)
    if not dims or any(m not in dims for m in spec.modalities):
        return None
    weight = next(backbone.parameters(), None)
    dtype = weight.dtype if weight is not None else torch.float32
    device = weight.device if weight is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    return {m: torch.randn(batch, steps, int(dims[m]), generator=gen).to(device=device, dtype=dtype)
            for m in spec.modalities}


def _called_modules(
    backbone: nn.Module, spec: Any, names: Sequence[str], example: Mapping[str, torch.Tensor]
) -> set[str]:
    """The names among ``names`` whose ``forward`` runs in one eval forward on ``example``."""
    called: set[str] = set()
    modules = dict(backbone.named_modules())
    handles = [modules[n].register_forward_hook(lambda mod, args, out, n=n: called.add(n)) for n in names]
    was_training = backbone.training
    dev = _device(backbone)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        backbone.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            backbone(**spec.kwargs(dict(example)))
    except Exception as e:
        raise RuntimeError(
            f"lora_target_modules could not run {type(backbone).__name__} on example inputs "
            f"{ {m: tuple(x.shape) for m, x in example.items()} } to find the layers whose forward runs ({e}); "
            "pass example= features that it accepts, or probe=False"
        ) from e
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    return called


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def peft_can_adapt(module: nn.Module) -> bool:
    """Whether peft's LoRA can wrap ``module``: any ``nn.Linear``; an ``nn.Conv1d`` whose class peft can
    rebuild for the low-rank pair (peft constructs ``type(module)(in, r, kernel_size, stride, padding,
    bias=False)``, which a subclass with another constructor, e.g. MulT's ``PointwiseConv1d``, refuses)."""
    if isinstance(module, nn.Linear):
        return True
    if not isinstance(module, nn.Conv1d):
        return False
    if type(module) is nn.Conv1d:
        return True
    try:
        type(module)(module.in_channels, 1, module.kernel_size, module.stride, module.padding, bias=False)
    except (TypeError, ValueError):
        return False
    return True


def lora_target_modules(
    backbone: nn.Module,
    hooks: Any = None,
    *,
    probe: bool = True,
    example: Mapping[str, torch.Tensor] | None = None,
) -> list[str]:
    """The module names LoRA adapts in ``backbone``, in ``named_modules`` order.

    Rule: every ``nn.Linear`` and every ``nn.Conv1d`` peft can wrap (:func:`peft_can_adapt`; MulT's
    ``PointwiseConv1d`` input projections it cannot), except the ones inside the spec's
    ``trainable`` modules (the head, which trains fully) and, with ``probe``, the ones whose
    ``forward`` does not run in one eval forward of the backbone (a layer whose weight the model
    reads directly would carry a LoRA that never reaches the output).

    Args:
        hooks: a HookSpec (or dict) for a backbone without a registered one.
        probe: drop the layers whose forward never runs (needs one forward; see ``example``).
        example: features ``{modality: (B, T, D)}`` for the probe; by default 2 samples of 4
            random steps, sized by ``backbone.feature_dims``.

    Raises:
        ValueError: ``backbone`` already holds LoRA layers, or no layer qualifies.
        RuntimeError: the probe's forward failed (pass ``example`` or ``probe=False``).
    """
    if has_lora(backbone):
        raise ValueError(f"this {type(backbone).__name__} already holds LoRA layers; select targets on a bare backbone")
    spec = _spec(backbone, hooks)
    head = [p for p in spec.trainable if not _is_lora_path(p)]
    names = [n for n, m in backbone.named_modules()
             if n and isinstance(m, _TARGET_TYPES) and not _inside(n, head) and peft_can_adapt(m)]
    if probe and names:
        if example is None:
            example = _example_inputs(backbone, spec)
        if example is None:
            warnings.warn(
                f"{type(backbone).__name__} has no feature_dims to build probe inputs from; every Linear/Conv1d "
                "outside the head is adapted, whether its forward runs or not (pass example= to probe)",
                stacklevel=2,
            )
        else:
            called = _called_modules(backbone, spec, names, example)
            names = [n for n in names if n in called]
    if not names:
        raise ValueError(
            f"{type(backbone).__name__} has no nn.Linear/nn.Conv1d outside its trainable modules {head} "
            "whose forward runs: nothing for LoRA to adapt"
        )
    return names


# --- injection --------------------------------------------------------------------------------------
def _exact(names: Sequence[str]) -> str:
    """A regex that peft full-matches against module names: exactly ``names``, no suffix matches."""
    return "(?:" + "|".join(re.escape(n) for n in names) + ")"


def lora_modules(backbone: nn.Module) -> list[str]:
    """The names of the peft LoRA layers in ``backbone``, in ``named_modules`` order."""
    from peft.tuners.lora import LoraLayer

    return [n for n, m in backbone.named_modules() if isinstance(m, LoraLayer)]


def lora_parameters(backbone: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA tensors (``...lora_A.default.weight``, ``...lora_B.default.weight``) by name."""
    return {n: p for n, p in backbone.named_parameters() if _is_lora_key(n)}


def _is_lora_key(key: str) -> bool:
    return any(part.startswith("lora_") for part in key.split("."))


def inject_lora(
    backbone: nn.Module,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    *,
    hooks: Any = None,
    seed: int = 0,
    train_head: bool = True,
) -> nn.Module:
    """Inject LoRA into ``backbone`` in place (``peft.inject_adapter_in_model``); returns it.

    The base weights keep their values and are frozen; the LoRA tensors are trainable, and with
    ``train_head`` so is the spec's trainable head. The random LoRA A matrices are drawn from
    ``seed`` inside :func:`torch.random.fork_rng` (the B matrices start at zero, so the output
    is the backbone's own until training moves them); the global RNG is left as it was.

    Args:
        r, alpha, dropout: LoRA's rank, scaling numerator (the update is ``alpha / r * B A x``) and
            dropout on its input.
        target_modules: exact module names; None: :func:`lora_target_modules`.
        hooks: a HookSpec (or dict) for a backbone without a registered one (its ``trainable`` is
            the head).

    Raises:
        ValueError: bad ``r``/``alpha``/``dropout``, a backbone that already holds LoRA, an unknown
            target name or one that is not an ``nn.Linear``/``nn.Conv1d``.
    """
    if int(r) != r or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be positive, got {alpha!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"LoRA dropout must lie in [0, 1), got {dropout!r}")
    if has_lora(backbone):
        raise ValueError(f"this {type(backbone).__name__} already holds LoRA layers; inject into a bare backbone")
    targets = list(lora_target_modules(backbone, hooks) if target_modules is None else target_modules)
    if not targets:
        raise ValueError("target_modules is empty: nothing for LoRA to adapt")
    modules = dict(backbone.named_modules())
    for name in targets:
        if name not in modules:
            raise ValueError(f"LoRA target {name!r} does not exist in {type(backbone).__name__}")
        if not isinstance(modules[name], _TARGET_TYPES):
            raise ValueError(f"LoRA target {name!r} is a {type(modules[name]).__name__}, not an nn.Linear/nn.Conv1d")
    if len(set(targets)) != len(targets):
        raise ValueError(f"target_modules names a module twice: {targets}")
    head = [p for p in _spec(backbone, hooks).trainable if not _is_lora_path(p)] if train_head else []
    return _inject(backbone, r, alpha, float(dropout), targets, head, seed=seed)


def _inject(backbone: nn.Module, r: int, alpha: float, dropout: float, targets: list[str], head: Sequence[str],
            *, seed: int) -> nn.Module:
    """peft's injection of exactly ``targets`` (seeded), then only LoRA and ``head`` trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=float(dropout), target_modules=_exact(targets),
                        bias="none")
    dev = _device(backbone)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(int(seed) & ((1 << 63) - 1))
        inject_adapter_in_model(config, backbone, adapter_name=ADAPTER_NAME)
    injected = lora_modules(backbone)
    if sorted(injected) != sorted(targets):
        raise RuntimeError(f"peft adapted {injected}, not the requested {targets}")
    for name, p in backbone.named_parameters():
        p.requires_grad_(_is_lora_key(name) or _inside(name, head))
    backbone._promptkit_lora = {"r": int(r), "lora_alpha": alpha, "lora_dropout": float(dropout),
                                "target_modules": list(targets), "bias": "none"}
    return backbone


def _adapter_keys(backbone: nn.Module, head: Sequence[str]) -> list[str]:
    """The state keys an adapter file holds for ``backbone``: its LoRA tensors and the head's state."""
    return [k for k in backbone.state_dict() if _is_lora_key(k) or _inside(k, head)]


def lora_config(backbone: nn.Module) -> dict[str, Any]:
    """The LoRA settings :func:`inject_lora` used on ``backbone`` (JSON-ready)."""
    config = getattr(backbone, "_promptkit_lora", None)
    if config is None:
        raise ValueError(f"this {type(backbone).__name__} holds no LoRA injected by inject_lora")
    return dict(config)


def base_state_shapes(backbone: nn.Module) -> dict[str, tuple[int, ...]]:
    """The backbone's state layout as it was before LoRA: LoRA tensors dropped, ``base_layer`` removed."""
    return {re.sub(r"\.base_layer(?=\.|$)", "", k): tuple(v.shape)
            for k, v in backbone.state_dict().items() if not _is_lora_key(k)}


def _base_weights_digest(backbone: nn.Module, head: Sequence[str]) -> str:
    """sha256 (16 hex) of the frozen base weights (the head and LoRA tensors left out)."""
    from ..checkpoint import state_digest

    items = {re.sub(r"\.base_layer(?=\.|$)", "", k): v for k, v in backbone.state_dict().items() if not _is_lora_key(k)}
    return state_digest({k: v for k, v in items.items() if not _inside(k, head)})


# --- saving -----------------------------------------------------------------------------------------
def _backbone_and_head(model: nn.Module, hooks: Any) -> tuple[nn.Module, list[str]]:
    from ..prompter import MissingModalityPrompter

    if isinstance(model, MissingModalityPrompter):
        backbone, spec = model.backbone, model.spec
    else:
        backbone, spec = model, _spec(model, hooks)
    return backbone, [p for p in spec.trainable if not _is_lora_path(p)]


def lora_adapter_state(model: nn.Module, hooks: Any = None) -> dict[str, torch.Tensor]:
    """The LoRA tensors and the head's state of a LoRA backbone (or a prompter on one), by backbone key."""
    backbone, head = _backbone_and_head(model, hooks)
    state = backbone.state_dict()
    out = {k: v for k, v in state.items() if _is_lora_key(k)}
    if not out:
        raise ValueError(f"this {type(backbone).__name__} holds no LoRA tensors")
    out.update({k: v for k, v in state.items() if _inside(k, head) and not _is_lora_key(k)})
    return out


def save_lora_adapter(model: nn.Module, path: str | Path, *, hooks: Any = None) -> Path:
    """Write only the LoRA tensors and the head of ``model`` (a LoRA backbone or a prompter on one)
    to ``path``: a promptkit safetensors checkpoint of kind ``"lora-adapter"`` whose meta holds the
    LoRA config, the head paths and the base backbone's class, layout fingerprint and weights digest."""
    import peft

    from ..checkpoint import fingerprint, save_checkpoint

    backbone, head = _backbone_and_head(model, hooks)
    tensors = lora_adapter_state(model, hooks)
    meta = {
        "lora": lora_config(backbone),
        "head": head,
        "backbone_class": type(backbone).__name__,
        "backbone_fingerprint": fingerprint(base_state_shapes(backbone)),
        "backbone_weights": _base_weights_digest(backbone, head),
        "peft_version": peft.__version__,
    }
    return save_checkpoint(path, tensors, meta, kind=LORA_KIND)


def load_lora_adapter(backbone: nn.Module, path: str | Path, *, check_weights: bool = True) -> nn.Module:
    """Inject LoRA into bare ``backbone`` with the file's config and load its tensors; returns it.

    Raises:
        CheckpointError: not a LoRA adapter, corrupt, or made on another backbone (another class
            or layout; with ``check_weights``, other frozen base weights).
        ValueError: ``backbone`` already holds LoRA layers.
    """
    from ..checkpoint import CheckpointError, fingerprint, load_checkpoint

    tensors, meta = load_checkpoint(path, kind=LORA_KIND)
    if has_lora(backbone):
        raise ValueError(f"this {type(backbone).__name__} already holds LoRA layers; load the adapter into a bare one")
    if meta.get("backbone_class") != type(backbone).__name__:
        raise CheckpointError(
            f"LoRA adapter {path} was trained on a {meta.get('backbone_class')}, not a {type(backbone).__name__}"
        )
    if meta.get("backbone_fingerprint") != fingerprint(base_state_shapes(backbone)):
        raise CheckpointError(
            f"LoRA adapter {path} belongs to another backbone: its layout fingerprint "
            f"{meta.get('backbone_fingerprint')} differs from this {type(backbone).__name__}'s "
            f"{fingerprint(base_state_shapes(backbone))} (another config or feature sizes)"
        )
    head = list(meta.get("head", []))
    if check_weights and meta.get("backbone_weights") != _base_weights_digest(backbone, head):
        raise CheckpointError(
            f"LoRA adapter {path} was trained on other pre-trained weights of this {type(backbone).__name__} "
            "(its frozen base weights differ); load the backbone it was trained on, or pass check_weights=False"
        )
    cfg = meta["lora"]
    _inject(backbone, cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"], list(cfg["target_modules"]), head, seed=0)
    want = _adapter_keys(backbone, head)
    if set(want) != set(tensors):
        raise CheckpointError(
            f"LoRA adapter {path} does not fit this backbone's LoRA layers: it has extra tensors "
            f"{sorted(set(tensors) - set(want))[:5]} and lacks {sorted(set(want) - set(tensors))[:5]}"
        )
    missing, unexpected = backbone.load_state_dict(tensors, strict=False)
    if unexpected:
        raise CheckpointError(f"LoRA adapter {path}: tensors {unexpected[:5]} do not fit the backbone")
    return backbone


# --- the methods ------------------------------------------------------------------------------------
def lora_training_spec(backbone: nn.Module, spec: Any) -> Any:
    """``spec`` with each LoRA layer's ``lora_A`` and ``lora_B`` added to its ``trainable`` modules, so
    a prompter on the LoRA backbone trains (and saves) them with the head."""
    extra = [f"{name}.{part}" for name in lora_modules(backbone) for part in _LORA_PARTS]
    if not extra:
        raise ValueError(f"this {type(backbone).__name__} holds no LoRA layers")
    return dataclasses.replace(spec, trainable=[*spec.trainable, *[p for p in extra if p not in spec.trainable]])


def _count(params: Any) -> int:
    return sum(p.numel() for p in params)


def train_lora(
    recipe: Any,
    data: Any,
    backbone_file: str | Path,
    out_dir: str | Path,
    *,
    prompts: bool,
    name: str,
    hooks: Any = None,
    r: int = 8,
    alpha: int = 16,
    lora_dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    **opts: Any,
) -> TrainedMethod:
    """LoRA on the pre-trained backbone in ``backbone_file``, trained by the prompt stage at the
    recipe's ``[prompt] eta``: with the head alone (``prompts=False``, the head-only control's
    prompter: zero substitution) or with the recipe's MPLMM prompts (``prompts=True``).

    Writes ``out_dir/lora_adapter.safetensors`` (LoRA + head only, :func:`save_lora_adapter`) beside
    the prompt stage's run files and ``out_dir/adapter``. ``opts`` go to
    :func:`~promptkit.train.prompt_stage.prompt_tune` (and on to ``fit``: ``device``, ``resume``,
    ``overwrite``, ``progress``, ``evaluate_test``, ...).
    """
    from ..backbone_files import load_backbone
    from ..evaluation.protocol import prompted_forward
    from ..seeding import derive_seed
    from ..train.device import resolve_device
    from ..train.distributed import is_main_process, main_process_first
    from ..train.methods import PROMPTS
    from ..train.prompt_stage import prompt_tune

    out_dir = Path(out_dir)
    opts.setdefault("evaluate_test", False)  # the protocol reads the test split, once
    backbone = load_backbone(backbone_file, device=resolve_device(opts.get("device")), recipe=recipe)
    spec = _spec(backbone, hooks if hooks is not None else recipe.hook_spec())
    inject_lora(backbone, r=r, alpha=alpha, dropout=lora_dropout, target_modules=target_modules, hooks=spec,
                seed=derive_seed(int(recipe.prompt.seed), "lora-init", name))
    prompter, result = prompt_tune(recipe, data, backbone, out_dir, hooks=lora_training_spec(backbone, spec),
                                   method=PROMPTS if prompts else "head_only", **opts)
    prompter.eval()
    path = out_dir / ADAPTER_FILE
    with main_process_first():
        if is_main_process():
            save_lora_adapter(prompter, path)
    head = [p for p in spec.trainable if not _is_lora_path(p)]
    lora_n = _count(lora_parameters(backbone).values())
    head_n = _count(p for n, p in backbone.named_parameters() if _inside(n, head) and not _is_lora_key(n))
    trainable = _count(p for p in prompter.parameters() if p.requires_grad)
    counts = prompter.prompt_parameters()
    return TrainedMethod(
        name=name,
        forward=prompted_forward(prompter),
        trainable_params=trainable,
        modules={"prompter": prompter},
        info={
            "best_epoch": result.best_epoch,
            "best_valid": result.best_valid,
            "eta": recipe.prompt.eta,
            "lora": lora_config(backbone),
            "adapter": str(path),
            "counts": {"lora": lora_n, "head": head_n, "prompts": trainable - lora_n - head_n,
                       "prompt_tensors": counts["generative"] + counts["signal"] + counts["type"]},
        },
    )


@register_method("lora")
def lora_method(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
                **opts: Any) -> TrainedMethod:
    """LoRA + the trainable head, every prompt type off, missing inputs zero-filled, trained at eta."""
    return train_lora(recipe, data, backbone_file, out_dir, prompts=False, name="lora", hooks=hooks, **opts)


@register_method("lora_mplmm")
def lora_mplmm_method(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
                      **opts: Any) -> TrainedMethod:
    """LoRA + the recipe's MPLMM prompts (and the head), trained at eta."""
    return train_lora(recipe, data, backbone_file, out_dir, prompts=True, name="lora_mplmm", hooks=hooks, **opts)

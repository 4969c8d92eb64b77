"""What :mod:`benchmarks.speed` times: train steps of every backbone and its prompter, MMGM
against a per-sample loop, and MPLMM's prompts against per-case prompt sets as M grows.

Each ``measure_*`` returns the JSON-ready rows of one section; the timing, FLOP and memory
helpers they call are in :mod:`benchmarks._measure`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

import promptkit
from backbones import create_backbone
from backbones.layers import TransformerEncoder
from promptkit.modalities import ModalitySet
from promptkit.methods.mpmm import per_case_prompt_parameters
from promptkit.prompter import MissingModalityGenerator, PrompterConfig

from ._measure import (
    autocast_for,
    count_flops,
    interleaved_medians,
    load_average,
    peak_memory,
    time_breakdown,
)

if TYPE_CHECKING:
    from .speed import SpeedConfig


# --- train steps ---------------------------------------------------------------------------------


def make_train_step(
    model: nn.Module,
    forward: Callable[[], torch.Tensor],
    labels: torch.Tensor,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> Callable[[], torch.Tensor]:
    """One optimisation step (forward, L1 + auxiliary loss, backward, Adam) over ``model``'s
    trainable parameters; gradients are released at the end so each step starts without them."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)

    def step() -> torch.Tensor:
        with autocast():
            out = forward()
            loss = F.l1_loss(out.float().squeeze(-1), labels)
            aux = model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else None
            if aux is not None:
                loss = loss + aux
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def make_inputs(
    feature_dims: dict[str, int], lengths: dict[str, int], batch: int, device: torch.device, seed: int
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, lengths[m], d, generator=g).to(device) for m, d in feature_dims.items()}


@dataclass
class Workload:
    """One backbone on one shape: the bare model, its prompter and their inputs."""

    name: str
    shape: str
    lengths: dict[str, int]
    bare: nn.Module
    full: nn.Module
    prompter: promptkit.MissingModalityPrompter
    inputs: dict[str, torch.Tensor]
    mask: torch.Tensor
    labels: torch.Tensor


def build_workload(name: str, shape: str, cfg: SpeedConfig, device: torch.device) -> Workload:
    """The same initial weights for the full-fine-tuning model, the prompter's frozen copy and
    the bare (unwrapped) model used as the overhead reference."""
    torch.manual_seed(cfg.seed)
    kwargs = {"feature_dims": dict(cfg.feature_dims), **cfg.backbone_kwargs.get(name, {})}
    full = create_backbone(name, **kwargs)
    state = copy.deepcopy(full.state_dict())
    frozen, bare = create_backbone(name, **kwargs), create_backbone(name, **kwargs)
    frozen.load_state_dict(state)
    bare.load_state_dict(state)
    prompter = promptkit.wrap(frozen, config=PrompterConfig(prompt_length=cfg.prompt_length))
    lengths = cfg.shapes[shape]
    inputs = make_inputs(cfg.feature_dims, lengths, cfg.batch, device, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mask = prompter.modality_set.sample_masks(cfg.batch, cfg.eta, gen).to(device)
    labels = torch.randn(cfg.batch, generator=gen).to(device)
    return Workload(name, shape, dict(lengths), bare.to(device), full.to(device), prompter.to(device), inputs, mask, labels)


def _eval_forward(model: nn.Module, inputs: dict[str, torch.Tensor], mask: torch.Tensor | None, autocast) -> Callable:
    def fwd() -> torch.Tensor:
        with torch.no_grad(), autocast():
            return model(**inputs) if mask is None else model(**inputs, mask=mask)

    return fwd


def _rows(x: dict[str, torch.Tensor], n: int, device: torch.device) -> dict[str, torch.Tensor]:
    """``n`` samples: the first rows, repeated when ``n`` exceeds the batch."""
    reps = math.ceil(n / next(iter(x.values())).shape[0])
    return {m: v.repeat(reps, 1, 1)[:n].contiguous().to(device) for m, v in x.items()}


def measure_workload(w: Workload, cfg: SpeedConfig, device: torch.device, peak: float, compiled: bool = False) -> dict[str, Any]:
    """Every per-backbone figure for one workload (see the module docstring)."""
    autocast = autocast_for(device, cfg.autocast)
    w.full.train()
    w.prompter.train()
    full_step = make_train_step(w.full, lambda: w.full(**w.inputs), w.labels, autocast)
    prompt_step = make_train_step(w.prompter, lambda: w.prompter(**w.inputs, mask=w.mask), w.labels, autocast)
    row: dict[str, Any] = {
        "backbone": w.name,
        "shape": w.shape,
        "lengths": w.lengths,
        "batch": cfg.batch,
        "compiled": compiled,
        "params": w.prompter.trainable_summary(),
    }
    # FLOPs: counted eagerly (the counter does not see inside compiled kernels; the math is the same)
    flops = {"full": count_flops(full_step), "prompt": count_flops(prompt_step)}
    row["full_flops"], row["prompt_flops"] = (sum(flops[k].values()) for k in ("full", "prompt"))
    if compiled:
        from promptkit.compile import compile_model

        compile_model(w.full)
        compile_model(w.prompter)
        compile_model(w.bare)
    steps = interleaved_medians({"full": full_step, "prompt": prompt_step}, cfg.repeats, max(cfg.warmup, 1), device)
    row["full_s"], row["prompt_s"] = steps["full"]["median_s"], steps["prompt"]["median_s"]
    row["full_first_s"], row["prompt_first_s"] = steps["full"]["first_s"], steps["prompt"]["first_s"]
    row["ratio"] = row["prompt_s"] / row["full_s"]
    row["flop_ratio"] = row["prompt_flops"] / row["full_flops"]
    row["full_peak_fraction"] = row["full_flops"] / row["full_s"] / peak
    row["prompt_peak_fraction"] = row["prompt_flops"] / row["prompt_s"] / peak
    row["full_mem_mib"] = peak_memory(full_step, device) / 2**20
    row["prompt_mem_mib"] = peak_memory(prompt_step, device) / 2**20
    if cfg.breakdown and device.type == "cpu" and not compiled:
        # where the time goes, so a low fraction of peak can be traced to its ops
        row["full_breakdown"] = time_breakdown(full_step, flops["full"])
        row["prompt_breakdown"] = time_breakdown(prompt_step, flops["prompt"])

    # wrapping overhead: prompts disabled vs the bare backbone, eval forward on the same batch
    w.bare.eval()
    w.prompter.eval()

    def disabled() -> torch.Tensor:
        with w.prompter.prompts_disabled():
            return _eval_forward(w.prompter, w.inputs, w.mask, autocast)()

    # the same inputs for both: prompts_disabled() runs the backbone on zero-filled inputs
    zero_filled = {m: x.masked_fill(~w.mask[:, i, None, None], 0.0) for i, (m, x) in enumerate(w.inputs.items())}
    quick = row["full_s"] < 0.5  # short calls: more rounds, so a 3 % difference stands out of the noise
    fwd = interleaved_medians(
        {"bare": _eval_forward(w.bare, zero_filled, None, autocast), "wrapped_disabled": disabled},
        cfg.repeats * (5 if quick else 1),
        max(cfg.warmup, 1),
        device,
    )
    row["bare_forward_s"] = fwd["bare"]["median_s"]
    row["wrapped_disabled_forward_s"] = fwd["wrapped_disabled"]["median_s"]
    row["wrap_overhead"] = row["wrapped_disabled_forward_s"] / row["bare_forward_s"]

    # inference: latency at batch 1, throughput at batch 256 (prompts on, eta masks)
    for label, n in (("latency", cfg.latency_batch), ("throughput", cfg.throughput_batch)):
        x = _rows(w.inputs, n, device)
        m = w.mask.repeat(math.ceil(n / cfg.batch), 1)[:n].contiguous()
        t = interleaved_medians(
            {"bare": _eval_forward(w.bare, x, None, autocast), "prompted": _eval_forward(w.prompter, x, m, autocast)},
            cfg.repeats,
            max(cfg.warmup, 1),
            device,
        )
        for kind in ("bare", "prompted"):
            s = t[kind]["median_s"]
            if label == "latency":
                row[f"latency_b{n}_ms_{kind}"] = 1000 * s
            else:
                row[f"throughput_b{n}_per_s_{kind}"] = n / s
    row["load_average"] = load_average()
    return row


# --- MMGM ----------------------------------------------------------------------------------------


def mmgm_per_sample(mmgm: MissingModalityGenerator, features: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The baseline: the same generator called one sample at a time (the authors' loop)."""
    outs: dict[str, list[torch.Tensor]] = {m: [] for m in features}
    for b in range(mask.shape[0]):
        one = mmgm({m: x[b : b + 1] for m, x in features.items()}, mask[b : b + 1])
        for m in features:
            outs[m].append(one[m])
    return {m: torch.cat(v) for m, v in outs.items()}


def measure_mmgm(cfg: SpeedConfig, device: torch.device, shape: str) -> dict[str, Any]:
    """Vectorised MMGM vs the per-sample loop on one shape: forward (eval, no grad) and forward +
    backward."""
    torch.manual_seed(cfg.seed)
    mmgm = MissingModalityGenerator(cfg.feature_dims, prompt_length=cfg.prompt_length).to(device)
    lengths = cfg.shapes[shape]
    x = make_inputs(cfg.feature_dims, lengths, cfg.mmgm_batch, device, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mask = ModalitySet(tuple(cfg.feature_dims)).sample_masks(cfg.mmgm_batch, cfg.eta, gen).to(device)
    x = {m: v * mask[:, i, None, None] for i, (m, v) in enumerate(x.items())}  # zero-filled, as MMGM expects

    mmgm.eval()
    with torch.no_grad():
        vec, loop = mmgm(x, mask), mmgm_per_sample(mmgm, x, mask)
    max_diff = max(float((vec[m] - loop[m]).abs().max()) for m in x)

    def backward_of(fn: Callable) -> Callable:
        def run() -> None:
            out = fn()
            sum(v.float().pow(2).mean() for v in out.values()).backward()
            mmgm.zero_grad(set_to_none=True)

        return run

    def no_grad_of(fn: Callable) -> Callable:
        def run() -> None:
            with torch.no_grad():
                fn()

        return run

    vec_fn, loop_fn = (lambda: mmgm(x, mask)), (lambda: mmgm_per_sample(mmgm, x, mask))
    fwd = interleaved_medians({"vectorised": no_grad_of(vec_fn), "loop": no_grad_of(loop_fn)}, cfg.repeats, max(cfg.warmup, 1), device)
    mmgm.train()
    train = interleaved_medians({"vectorised": backward_of(vec_fn), "loop": backward_of(loop_fn)}, cfg.repeats, max(cfg.warmup, 1), device)
    return {
        "shape": shape,
        "lengths": dict(lengths),
        "batch": cfg.mmgm_batch,
        "missing_fraction": float((~mask).float().mean()),
        "max_abs_diff_vs_loop": max_diff,
        "forward_vectorised_s": fwd["vectorised"]["median_s"],
        "forward_loop_s": fwd["loop"]["median_s"],
        "forward_speedup": fwd["loop"]["median_s"] / fwd["vectorised"]["median_s"],
        "train_vectorised_s": train["vectorised"]["median_s"],
        "train_loop_s": train["loop"]["median_s"],
        "train_speedup": train["loop"]["median_s"] / train["vectorised"]["median_s"],
    }


# --- scaling in the number of modalities -----------------------------------------------------


class ScalingToy(nn.Module):
    """A toy backbone for M modalities: per modality a k=1 Conv1d projection ``(B, d, T)`` and
    a one-layer transformer ``(B, T, d)``; the last steps are concatenated into a linear head."""

    def __init__(self, feature_dims: dict[str, int], width: int) -> None:
        super().__init__()
        self.feature_dims = dict(feature_dims)
        self.proj = nn.ModuleDict({m: nn.Conv1d(d, width, 1, bias=False) for m, d in feature_dims.items()})
        self.enc = nn.ModuleDict({m: TransformerEncoder(width, 2, layers=1) for m in feature_dims})
        self.head = nn.Linear(width * len(feature_dims), 1)

    def forward(self, **x: torch.Tensor) -> torch.Tensor:
        last = [self.enc[m](self.proj[m](x[m].transpose(1, 2)).transpose(1, 2))[:, -1] for m in self.feature_dims]
        return self.head(torch.cat(last, dim=-1))

    def hook_spec(self) -> dict[str, Any]:
        width = self.head.in_features // len(self.feature_dims)
        mods = list(self.feature_dims)
        return {
            "features": {m: m for m in mods},
            "signal": {m: {"path": f"proj.{m}", "layout": "BDT", "width": width} for m in mods},
            "type": [{"path": f"enc.{m}", "layout": "BTD", "width": width} for m in mods],
            "trainable": ["head"],
        }


class PerCasePrompter(nn.Module):
    """The per-case baseline (MPMM, Lee et al. 2023): one prompt set ``(l_p, d)`` per missing case
    and type target, ``2**M - 1`` sets, chosen per sample by its case and prepended to the
    target's input; missing inputs are zero-filled. Only the prompts and the head train."""

    def __init__(self, backbone: ScalingToy, length: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.modality_set = ModalitySet(tuple(backbone.feature_dims))
        cases, width = len(self.modality_set.cases), backbone.head.in_features // len(backbone.feature_dims)
        self.prompts = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(cases, length, width) * 0.02) for m in backbone.feature_dims}
        )
        for p in backbone.parameters():
            p.requires_grad_(False)
        for p in backbone.head.parameters():
            p.requires_grad_(True)
        self._tokens: dict[str, torch.Tensor] = {}
        for m in backbone.feature_dims:
            enc = backbone.enc[m]
            enc.register_forward_pre_hook(lambda mod, args, m=m: (torch.cat([self._tokens[m], args[0]], 1), *args[1:]))
            enc.register_forward_hook(lambda mod, args, out, n=length: out[:, n:])

    def forward(self, mask: torch.Tensor, **x: torch.Tensor) -> torch.Tensor:
        case = self.modality_set.case_ids_from_masks(mask)
        self._tokens = {m: p[case] for m, p in self.prompts.items()}
        zero_filled = {m: v * mask[:, i, None, None] for i, (m, v) in enumerate(x.items())}
        try:
            return self.backbone(**zero_filled)
        finally:
            self._tokens = {}


def measure_scaling(cfg: SpeedConfig, device: torch.device) -> list[dict[str, Any]]:
    """Prompt parameters and prompt-tuning step time as M grows: MPLMM vs per-case prompt sets.

    Both without MMGM, so the comparison is of the prompts alone."""
    rows = []
    autocast = autocast_for(device, cfg.autocast)
    for M in cfg.scaling_modalities:
        dims = {f"m{i}": 8 for i in range(M)}
        torch.manual_seed(cfg.seed)
        mplmm_toy, case_toy = ScalingToy(dims, cfg.scaling_width), ScalingToy(dims, cfg.scaling_width)
        case_toy.load_state_dict(mplmm_toy.state_dict())
        mplmm = promptkit.wrap(
            mplmm_toy, hooks=mplmm_toy.hook_spec(), config=PrompterConfig(generative=False, prompt_length=cfg.prompt_length)
        ).to(device)
        per_case = PerCasePrompter(case_toy, cfg.prompt_length).to(device)
        x = make_inputs(dims, {m: cfg.scaling_steps for m in dims}, cfg.scaling_batch, device, cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        mask = mplmm.modality_set.sample_masks(cfg.scaling_batch, cfg.eta, gen).to(device)
        labels = torch.randn(cfg.scaling_batch, generator=gen).to(device)
        mplmm.train()
        per_case.train()
        t = interleaved_medians(
            {
                "mplmm": make_train_step(mplmm, lambda: mplmm(**x, mask=mask), labels, autocast),
                "per_case": make_train_step(per_case, lambda: per_case(mask, **x), labels, autocast),
            },
            cfg.repeats,
            max(cfg.warmup, 1),
            device,
        )
        counts = mplmm.prompt_parameters()
        mplmm_params = int(counts["signal"] + counts["type"])
        case_params = sum(p.numel() for p in per_case.prompts.parameters())
        expected = per_case_prompt_parameters(M, cfg.prompt_length, [cfg.scaling_width] * M)
        if case_params != expected:
            raise AssertionError(f"per-case baseline holds {case_params} prompt parameters, expected {expected}")
        rows.append(
            {
                "modalities": M,
                "cases": 2**M - 1,
                "mplmm_prompt_params": mplmm_params,
                "per_case_prompt_params": case_params,
                "mplmm_step_s": t["mplmm"]["median_s"],
                "per_case_step_s": t["per_case"]["median_s"],
            }
        )
    return rows


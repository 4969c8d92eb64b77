"""``python -m benchmarks.speed``: training speed measured against the machine's own limit.

On CMU-MOSI shapes (batch 64; aligned 50/50/50 steps, unaligned 50/375/500; features 300/5/20):

1. **MulT** (d 30, 5 heads, 5 layers), then **every registered backbone** in a second table:
   train-step time of full fine-tuning and of prompt tuning (frozen backbone, eta = 0.7 masks) and
   their ratio (goal <= 0.70); the FLOPs of each step by ``torch.utils.flop_counter`` and the
   achieved FLOP/s as a fraction of a dense fp32 matmul's FLOP/s measured in the same run (goal
   >= 40 % for MulT's training step); the wrapped model with prompts disabled against the bare
   backbone (eval forward, goal <= 1.03); peak memory of each step; inference latency at batch 1
   and throughput at batch 256.
2. **MMGM**: the vectorised generator against a per-sample loop over the same module (goal >= 30x).
3. **Scaling in M** (2..8 modalities, a toy backbone): prompt parameters and step time of MPLMM's
   prompts (linear in M) against per-case prompt sets (MPMM, ``2**M - 1`` sets), with a PNG plot.

Every time is a median over repeated runs after warm-up; runs that are compared (full vs prompt,
wrapped vs bare, loop vs vectorised) are interleaved in one process. Results, the machine and the
load average go to ``benchmarks/results/speed_<device>.json`` (+ ``_scaling.png``).

Usage::

    python -m benchmarks.speed                   # CPU, everything
    python -m benchmarks.speed --device cuda     # GPU, bf16 autocast where supported
    python -m benchmarks.speed --compile         # adds torch.compile'd MulT rows
    python -m benchmarks.speed --sections mult --shapes aligned --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import promptkit
from backbones import create_backbone, list_backbones
from backbones.layers import TransformerEncoder
from promptkit.modalities import ModalitySet
from promptkit.prompter import MissingModalityGenerator, PrompterConfig, per_case_prompt_parameters

from ._common import RESULTS_DIR, machine_info, write_json

FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}
SHAPES: dict[str, dict[str, int]] = {
    "aligned": {"text": 50, "audio": 50, "vision": 50},
    "unaligned": {"text": 50, "audio": 375, "vision": 500},
}
GOALS: dict[str, float] = {
    "prompt_full_ratio_max": 0.70,
    "mult_peak_fraction_min": 0.40,
    "wrap_overhead_max": 1.03,
    "mmgm_speedup_min": 30.0,
}
SECTIONS: tuple[str, ...] = ("mult", "backbones", "mmgm", "scaling")


@dataclass
class SpeedConfig:
    """What to measure and how often; :meth:`tiny` is the test suite's seconds-long version."""

    device: str = "cpu"
    batch: int = 64
    shapes: dict[str, dict[str, int]] = field(default_factory=lambda: {k: dict(v) for k, v in SHAPES.items()})
    feature_dims: dict[str, int] = field(default_factory=lambda: dict(FEATURE_DIMS))
    backbones: tuple[str, ...] = ()  # () = every registered backbone
    backbone_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: tuple[str, ...] = SECTIONS
    repeats: int = 5
    warmup: int = 2
    eta: float = 0.7
    latency_batch: int = 1
    throughput_batch: int = 256
    matmul_size: int = 2048
    mmgm_batch: int = 64
    scaling_modalities: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    scaling_batch: int = 32
    scaling_steps: int = 20
    scaling_width: int = 16
    prompt_length: int = 16
    compile: bool = False
    autocast: bool = True
    breakdown: bool = True  # profiler time per op category for each row (CPU)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown section(s) {sorted(unknown)}; known: {list(SECTIONS)}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        for name, lengths in self.shapes.items():
            if set(lengths) != set(self.feature_dims):
                raise ValueError(f"shape {name!r} gives lengths for {sorted(lengths)}, features are {sorted(self.feature_dims)}")

    @classmethod
    def tiny(cls, **overrides: Any) -> "SpeedConfig":
        """A few-second run of every code path: small sizes, one repeat, M = 2..3."""
        small = {"d_model": 8, "num_heads": 2, "layers": 1}
        base = dict(
            batch=4,
            shapes={"aligned": {"text": 6, "audio": 6, "vision": 6}, "unaligned": {"text": 6, "audio": 9, "vision": 11}},
            feature_dims={"text": 12, "audio": 5, "vision": 7},
            backbone_kwargs={"mult": small},
            repeats=1,
            warmup=0,
            throughput_batch=8,
            matmul_size=128,
            mmgm_batch=4,
            scaling_modalities=(2, 3),
            scaling_batch=4,
            scaling_steps=5,
            scaling_width=8,
            prompt_length=4,
        )
        base.update(overrides)
        return cls(**base)


# --- measurement helpers -------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> dict[str, dict[str, float]]:
    """Seconds per call of each function: warm-up calls, then ``repeats`` rounds that call every
    function once in turn (so a load change hits all alike); median and min per function."""
    first: dict[str, float] = {}
    for name, fn in fns.items():
        for i in range(warmup):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i == 0:
                first[name] = time.perf_counter() - t0
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in samples.items():
        ts = sorted(ts)
        mid = len(ts) // 2
        median = ts[mid] if len(ts) % 2 else 0.5 * (ts[mid - 1] + ts[mid])
        out[name] = {"median_s": median, "min_s": ts[0], "first_s": first.get(name, float("nan")), "n": len(ts)}
    return out


def matmul_rate(device: torch.device, size: int, repeats: int, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """FLOP/s of a dense ``size x size`` matmul: the machine's own limit for this run."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, dtype)
    b = torch.randn(size, size, generator=g).to(device, dtype)
    t = interleaved_medians({"mm": lambda: a @ b}, repeats=max(repeats, 5), warmup=2, device=device)["mm"]
    flops = 2 * size**3
    return {"size": size, "dtype": str(dtype).replace("torch.", ""), "seconds": t["median_s"], "flops_per_s": flops / t["median_s"]}


def count_flops(fn: Callable[[], Any]) -> dict[str, int]:
    """FLOPs of one call per aten op (``aten.mm``, ``aten.bmm``, ...) by ``torch.utils.flop_counter``
    (matmuls, convolutions, attention); their sum is the call's total.

    Counted on the reference attention path (SDPA), so every score of every attention counts, as
    in the model's nominal FLOPs, also where the fast CPU path skips keys a mask blocks."""
    from torch.utils.flop_counter import FlopCounterMode

    with _reference_attention(), FlopCounterMode(display=False) as counter:
        fn()
    return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}


# profiler op name -> where the time goes; first match wins, unmatched ops are "other"
OP_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("scaled_dot_product", "softmax", "masked_fill", "DropoutAttention", "aten::bmm", "aten::baddbmm")),
    ("linear", ("aten::mm", "aten::addmm")),
    ("dropout", ("uniform_", "bernoulli", "log1p", "cumsum", "index_put", "searchsorted", "addcmul")),
    ("layer_norm", ("layer_norm",)),
)


def op_category(name: str) -> str:
    """The :data:`OP_CATEGORIES` bucket of a profiler op name (``aten::mm`` → ``linear``)."""
    for category, patterns in OP_CATEGORIES:
        if any(p == name if p.startswith("aten::") else p in name for p in patterns):
            return category
    return "other"


def time_breakdown(fn: Callable[[], Any], flops_by_op: dict[str, int] | None = None) -> dict[str, Any]:
    """Where one call's time goes: self time per :data:`OP_CATEGORIES` bucket from the profiler.

    ``seconds`` sums self times (the profiler's own overhead inflates the total a little, so
    read the shares). With ``flops_by_op`` (``aten.mm`` → FLOPs, from :func:`count_flops`)
    the linear layers' achieved FLOP/s comes with it: the GEMMs alone, against the matmul peak.
    """
    from torch.profiler import ProfilerActivity, profile

    runs = []
    for _ in range(3):  # the first profiled call of a process runs slow: keep the fastest of three
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        seconds: dict[str, float] = {c: 0.0 for c, _ in OP_CATEGORIES} | {"other": 0.0}
        for e in prof.key_averages():
            if e.key.startswith("aten::") or "DropoutAttention" in e.key:
                seconds[op_category(e.key)] += e.self_cpu_time_total / 1e6
            # python-level ranges (Optimizer.step#..., autograd nodes) have their children counted
        runs.append(seconds)
    seconds = min(runs, key=lambda r: sum(r.values()))
    total = sum(seconds.values())
    out: dict[str, Any] = {"seconds": seconds, "share": {c: s / total for c, s in seconds.items()}}
    if flops_by_op is not None:
        out["linear_flops"] = int(flops_by_op.get("aten.mm", 0) + flops_by_op.get("aten.addmm", 0))
        out["linear_flops_per_s"] = out["linear_flops"] / seconds["linear"] if seconds["linear"] else float("nan")
    return out


def _reference_attention() -> contextlib.AbstractContextManager:
    try:  # older checkouts of backbones.layers have only the reference path
        from backbones.layers import blockwise_attention
    except ImportError:
        return contextlib.nullcontext()
    return blockwise_attention(False)


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Bytes allocated at the peak of one call, above what was allocated when it started.

    CUDA: the caching allocator's peak statistics. CPU: the allocation/free events that the
    profiler records, summed in time order.
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return int(peak)


def _autocast(device: torch.device, enabled: bool) -> Callable[[], contextlib.AbstractContextManager]:
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


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
    autocast = _autocast(device, cfg.autocast)
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
    row["load_average"] = _load_average()
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
    autocast = _autocast(device, cfg.autocast)
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


def plot_scaling(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Two panels: prompt parameters (log scale) and step time against M."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = [r["modalities"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ms, [r["mplmm_prompt_params"] for r in rows], "o-", label="MPLMM (linear in M)")
    ax1.plot(ms, [r["per_case_prompt_params"] for r in rows], "s--", label="per-case sets (2^M - 1)")
    ax1.set_yscale("log")
    ax1.set_xlabel("modalities M")
    ax1.set_ylabel("prompt parameters")
    ax1.legend()
    ax2.plot(ms, [1000 * r["mplmm_step_s"] for r in rows], "o-", label="MPLMM")
    ax2.plot(ms, [1000 * r["per_case_step_s"] for r in rows], "s--", label="per-case sets")
    ax2.set_xlabel("modalities M")
    ax2.set_ylabel("prompt-tuning step (ms, median)")
    ax2.legend()
    fig.suptitle("Prompt cost as the number of modalities grows (toy backbone)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- the whole run -------------------------------------------------------------------------------


def run(cfg: SpeedConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure everything ``cfg.sections`` names; returns the JSON-ready result dict."""
    device = torch.device(cfg.device)
    result: dict[str, Any] = {
        "machine": {**machine_info(device), "load_average_start": _load_average()},
        "config": dataclasses.asdict(cfg),
        "goals": dict(GOALS),
    }
    dtype = torch.bfloat16 if _autocast(device, cfg.autocast) is not contextlib.nullcontext else torch.float32
    result["matmul"] = matmul_rate(device, cfg.matmul_size, cfg.repeats, dtype)
    peak = result["matmul"]["flops_per_s"]
    log(f"dense {result['matmul']['dtype']} matmul {cfg.matmul_size}^3: {peak / 1e9:.1f} GFLOP/s")

    names = list(cfg.backbones) or list_backbones()
    rows: list[dict[str, Any]] = []
    wanted = [n for n in names if n == "mult"] if "backbones" not in cfg.sections else names
    if "mult" in cfg.sections or "backbones" in cfg.sections:
        for name in wanted:
            for shape in cfg.shapes:
                log(f"{name} / {shape} ...")
                rows.append(measure_workload(build_workload(name, shape, cfg, device), cfg, device, peak))
                if name == "mult" and cfg.compile:
                    log(f"{name} / {shape} (torch.compile) ...")
                    rows.append(measure_workload(build_workload(name, shape, cfg, device), cfg, device, peak, True))
    result["mult"] = [r for r in rows if r["backbone"] == "mult"]
    result["backbones"] = [r for r in rows if not r["compiled"]] if "backbones" in cfg.sections else []
    if "mmgm" in cfg.sections:
        log("MMGM vectorised vs per-sample loop ...")
        result["mmgm"] = [measure_mmgm(cfg, device, shape) for shape in cfg.shapes]
    if "scaling" in cfg.sections:
        log("scaling in the number of modalities ...")
        result["scaling"] = measure_scaling(cfg, device)
    result["machine"]["load_average_end"] = _load_average()
    return result


def write_results(result: dict[str, Any], path: Path) -> dict[str, Path]:
    """The JSON file, and beside it the scaling plot when the run has one."""
    written = {"json": write_json(path, result)}
    if result.get("scaling"):
        written["png"] = plot_scaling(result["scaling"], path.with_name(path.stem + "_scaling.png"))
    return written


def _mark(ok: bool) -> str:
    return "[green]✓[/green]" if ok else "[red]✗[/red]"


def print_tables(result: dict[str, Any]) -> None:
    """The rich tables: MulT, every backbone, MMGM, scaling in M."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 160))
    g = result["goals"]
    peak = result["matmul"]["flops_per_s"]
    m = result["machine"]
    console.print(
        f"{m['cpu']} · {m['torch_threads']} threads · torch {m['torch']} · device {m['device']} · "
        f"load {m.get('load_average_start')} → {m.get('load_average_end')} · "
        f"dense {result['matmul']['dtype']} matmul {peak / 1e9:.1f} GFLOP/s"
    )
    if result.get("mult"):
        t = Table(title=f"MulT train step, batch {result['config']['batch']} (medians)")
        for c in ("shape", "compiled", "full s", "prompt s", f"ratio ≤{g['prompt_full_ratio_max']}", "FLOP ratio",
                  "GFLOP full/prompt", f"% peak full ≥{100 * g['mult_peak_fraction_min']:.0f}", "% peak prompt",
                  f"wrap ≤{g['wrap_overhead_max']}", "MiB full/prompt", "b1 ms (prompted)", "b256 /s (prompted)"):
            t.add_column(c, justify="right")
        for r in result["mult"]:
            t.add_row(
                r["shape"], "yes" if r["compiled"] else "no", f"{r['full_s']:.3f}", f"{r['prompt_s']:.3f}",
                f"{r['ratio']:.2f} {_mark(r['ratio'] <= g['prompt_full_ratio_max'])}", f"{r['flop_ratio']:.2f}",
                f"{r['full_flops'] / 1e9:.1f}/{r['prompt_flops'] / 1e9:.1f}",
                f"{100 * r['full_peak_fraction']:.1f} {_mark(r['full_peak_fraction'] >= g['mult_peak_fraction_min'])}",
                f"{100 * r['prompt_peak_fraction']:.1f}",
                f"{r['wrap_overhead']:.3f} {_mark(r['wrap_overhead'] <= g['wrap_overhead_max'])}",
                f"{r['full_mem_mib']:.0f}/{r['prompt_mem_mib']:.0f}",
                _fmt_pair(r, "latency", "ms"), _fmt_pair(r, "throughput", "per_s"),
            )
        console.print(t)
        _print_breakdown(console, result["mult"], peak)
    if result.get("backbones"):
        t = Table(title="Every registered backbone: train step (medians), eager")
        for c in ("backbone", "shape", "full s", "prompt s", "ratio", "FLOP ratio", "% peak full", "% peak prompt",
                  "wrap", "MiB full/prompt", "b1 ms bare/prompted", "b256 /s bare/prompted", "prompt params %"):
            t.add_column(c, justify="right")
        for r in result["backbones"]:
            t.add_row(
                r["backbone"], r["shape"], f"{r['full_s']:.3f}", f"{r['prompt_s']:.3f}",
                f"{r['ratio']:.2f} {_mark(r['ratio'] <= g['prompt_full_ratio_max'])}", f"{r['flop_ratio']:.2f}",
                f"{100 * r['full_peak_fraction']:.1f}", f"{100 * r['prompt_peak_fraction']:.1f}",
                f"{r['wrap_overhead']:.3f} {_mark(r['wrap_overhead'] <= g['wrap_overhead_max'])}",
                f"{r['full_mem_mib']:.0f}/{r['prompt_mem_mib']:.0f}",
                _fmt_pair(r, "latency", "ms", both=True), _fmt_pair(r, "throughput", "per_s", both=True),
                f"{100 * r['params']['prompt_share']:.2f}",
            )
        console.print(t)
    if result.get("mmgm"):
        t = Table(title=f"MMGM: vectorised vs a per-sample loop (goal ≥{g['mmgm_speedup_min']:.0f}x)")
        for c in ("shape", "batch", "inputs missing", "fwd ms vec/loop", "fwd speedup", "fwd+bwd ms vec/loop",
                  "fwd+bwd speedup", "max |diff|"):
            t.add_column(c, justify="right")
        for r in result["mmgm"]:
            t.add_row(
                r["shape"], str(r["batch"]), f"{100 * r['missing_fraction']:.0f}%",
                f"{1000 * r['forward_vectorised_s']:.1f}/{1000 * r['forward_loop_s']:.1f}",
                f"{r['forward_speedup']:.1f}x {_mark(r['forward_speedup'] >= g['mmgm_speedup_min'])}",
                f"{1000 * r['train_vectorised_s']:.1f}/{1000 * r['train_loop_s']:.1f}",
                f"{r['train_speedup']:.1f}x {_mark(r['train_speedup'] >= g['mmgm_speedup_min'])}",
                f"{r['max_abs_diff_vs_loop']:.1e}",
            )
        console.print(t)
    if result.get("scaling"):
        t = Table(title="Prompts as M grows (toy backbone, no MMGM)")
        for c in ("M", "cases", "MPLMM params", "per-case params", "MPLMM step ms", "per-case step ms"):
            t.add_column(c, justify="right")
        for r in result["scaling"]:
            t.add_row(str(r["modalities"]), str(r["cases"]), f"{r['mplmm_prompt_params']:,}", f"{r['per_case_prompt_params']:,}",
                      f"{1000 * r['mplmm_step_s']:.1f}", f"{1000 * r['per_case_step_s']:.1f}")
        console.print(t)


def _print_breakdown(console: Any, rows: Sequence[dict[str, Any]], peak: float) -> None:
    """Share of step time per op category (profiler self time) and the GEMMs' own FLOP/s."""
    from rich.table import Table

    rows = [r for r in rows if "full_breakdown" in r]
    if not rows:
        return
    categories = list(rows[0]["full_breakdown"]["share"])
    t = Table(title="MulT train step: where the time goes (profiler self time, % of step)")
    for c in ("shape", "step", *categories, "linear-layer GEMMs % of peak"):
        t.add_column(c, justify="right")
    for r in rows:
        for step in ("full", "prompt"):
            b = r[f"{step}_breakdown"]
            t.add_row(
                r["shape"], step, *(f"{100 * b['share'][c]:.0f}" for c in categories),
                f"{100 * b.get('linear_flops_per_s', float('nan')) / peak:.0f}",
            )
    console.print(t)


def _fmt_pair(r: dict[str, Any], label: str, unit: str, both: bool = False) -> str:
    keys = [k for k in r if k.startswith(label) and k.endswith("_prompted")]
    if not keys:
        return "-"
    prompted = r[keys[0]]
    bare = r[keys[0].replace("_prompted", "_bare")]
    fmt = "{:.1f}" if unit == "ms" else "{:.0f}"
    return f"{fmt.format(bare)}/{fmt.format(prompted)}" if both else fmt.format(prompted)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--compile", action="store_true", help="also measure MulT under torch.compile (inductor)")
    p.add_argument("--no-autocast", action="store_true", help="fp32 on GPU (default there: bf16 autocast)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--shapes", default="aligned,unaligned", help="comma-separated subset of aligned,unaligned")
    p.add_argument("--backbones", default="", help="comma-separated registry names (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tiny", action="store_true", help="the seconds-long smoke configuration")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/speed_<device>.json)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SpeedConfig:
    kw: dict[str, Any] = dict(
        device=args.device,
        compile=args.compile,
        autocast=not args.no_autocast,
        sections=tuple(s for s in args.sections.split(",") if s),
        backbones=tuple(b for b in args.backbones.split(",") if b),
        repeats=args.repeats,
        warmup=args.warmup,
    )
    if args.tiny:
        cfg = SpeedConfig.tiny(**kw)
    else:
        cfg = SpeedConfig(batch=args.batch, **kw)
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = set(shapes) - set(cfg.shapes)
    if unknown:
        raise SystemExit(f"unknown shape(s) {sorted(unknown)}; known: {list(cfg.shapes)}")
    cfg.shapes = {s: cfg.shapes[s] for s in shapes}
    return cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = config_from_args(args)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but torch.cuda.is_available() is False")
    result = run(cfg)
    out = args.out or RESULTS_DIR / f"speed_{torch.device(cfg.device).type}.json"
    written = write_results(result, out)
    print_tables(result)
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return result


if __name__ == "__main__":
    main()

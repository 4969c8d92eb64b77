"""Measurement helpers of the benchmarks: how a call is timed, counted and weighed.

* :func:`interleaved_medians`: seconds per call, functions that are compared timed in turn;
* :func:`matmul_rate`: a dense matmul's FLOP/s, the machine's own limit for a run;
* :func:`count_flops` and :func:`time_breakdown`: FLOPs per aten op, profiler time per op category;
* :func:`count_bytes` and :func:`memory_bandwidth`: bytes an op sequence moves, a copy's bytes/s;
* :func:`peak_memory`: bytes at the peak of one call (CUDA allocator or CPU profiler events);
* :func:`sync`, :func:`autocast_for`, :func:`load_average`: device sync, bf16 autocast, the load.

What is timed (train steps, workloads) is in :mod:`benchmarks._speed_workloads`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a timer sees it finished; nothing on CPU."""
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
            sync(device)
            if i == 0:
                first[name] = time.perf_counter() - t0
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
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

    with reference_attention(), FlopCounterMode(display=False) as counter:
        fn()
    return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}


def count_bytes(fn: Callable[[], Any]) -> int:
    """Bytes one call's aten ops read and write: every op's tensor inputs and outputs, each time it
    runs (views and metadata-only ops excluded). What the call moves if nothing stayed in cache:
    with :func:`memory_bandwidth`, the memory side of a roofline."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    free = {"view", "_unsafe_view", "reshape", "expand", "as_strided", "t", "transpose", "permute", "unsqueeze",
            "squeeze", "slice", "select", "alias", "detach", "unbind", "split", "split_with_sizes", "empty",
            "empty_like", "empty_strided", "lift_fresh"}

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket.__name__ not in free:
                leaves = tree_flatten((args, kwargs or {}, out))[0]
                Counter.total += sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))
            return out

    with reference_attention(), Counter():
        fn()
    return int(Counter.total)


def memory_bandwidth(device: torch.device, mib: int = 256, repeats: int = 5) -> dict[str, Any]:
    """Bytes/s of a large tensor copy (read + write): the machine's memory limit for this run."""
    n = mib * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    t = interleaved_medians({"copy": lambda: dst.copy_(src)}, repeats=repeats, warmup=2, device=device)["copy"]
    return {"mib": mib, "seconds": t["median_s"], "bytes_per_s": 2 * src.numel() * 4 / t["median_s"]}


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


def reference_attention() -> contextlib.AbstractContextManager:
    """A context in which ``backbones.layers`` attention takes PyTorch's SDPA path."""
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
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
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


def autocast_for(device: torch.device, enabled: bool) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of bf16 autocast contexts on a CUDA device that supports it, else of no-op contexts."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


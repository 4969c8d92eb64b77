"""``python -m benchmarks.speed``: training speed measured against the machine's own limit.

On CMU-MOSI shapes (batch 64; aligned 50/50/50 steps, unaligned 50/375/500; features 300/5/20):

1. **MulT** (d 30, 5 heads, 5 layers), then **every registered backbone** in a second table:
   train-step time of full fine-tuning and of prompt tuning (frozen backbone, eta = 0.7 masks) and
   their ratio (goal <= 0.70); the FLOPs of each step by ``torch.utils.flop_counter`` and the
   achieved FLOP/s as a fraction of a dense fp32 matmul's FLOP/s measured in the same run (goal
   >= 40 % for MulT's training step); the wrapped model with prompts disabled against the bare
   backbone (eval forward, goal <= 1.03); peak memory of each step; inference latency at batch 1
   and throughput at batch 256.
   **Reference**: MulT's train step and eval forward against MMSA 2.2.1's MULT with the same
   configuration, in turn in one process (goal: ratio <= 0.33 aligned, <= 0.20 unaligned; needs
   ``pip install --no-deps MMSA==2.2.1``), and each step against its roofline (its FLOPs at the
   matmul rate plus the bytes its ops move at the measured copy bandwidth; goal <= 2x).
   **Stages**: the main job's training stages (``recipes/mult-synth.toml``, a few epochs each)
   split into setup, training steps and validation; the MPLMM stage against full fine-tuning
   (goal <= 1.2).
2. **MMGM**: the vectorised generator against a per-sample loop over the same module (goal >= 30x).
3. **Scaling in M** (2..8 modalities, a toy backbone): prompt parameters and step time of MPLMM's
   prompts (linear in M) against per-case prompt sets (MPMM, ``2**M - 1`` sets), with a PNG plot.

Every time is a median over repeated runs after warm-up; runs that are compared (full vs prompt,
wrapped vs bare, loop vs vectorised) are interleaved in one process. Results, the machine and the
load average go to ``benchmarks/results/speed_<device>.json`` (+ ``_scaling.png``).

The code: this module holds the configuration, the run and the command line; what is timed is in
:mod:`benchmarks._speed_workloads`, how (timing, FLOPs, memory, device sync) in
:mod:`benchmarks._measure`, and the tables and plot in :mod:`benchmarks._speed_report`.

Usage::

    python -m benchmarks.speed                   # CPU, everything
    python -m benchmarks.speed --device cuda     # GPU, bf16 autocast where supported
    python -m benchmarks.speed --compile         # adds torch.compile'd MulT rows
    python -m benchmarks.speed --sections mult --shapes aligned --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backbones import list_backbones

from ._common import RESULTS_DIR, machine_info, write_json
from ._measure import autocast_for, load_average, matmul_rate, memory_bandwidth
from ._mmsa_reference import VERSION as MMSA_VERSION
from ._speed_reference import measure_reference
from ._speed_stages import measure_stages
from ._speed_report import plot_scaling, print_tables
from ._speed_workloads import (
    build_workload,
    measure_mmgm,
    measure_scaling,
    measure_workload,
)

FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}
SHAPES: dict[str, dict[str, int]] = {
    "aligned": {"text": 50, "audio": 50, "vision": 50},
    "unaligned": {"text": 50, "audio": 375, "vision": 500},
}
GOALS: dict[str, float] = {
    "prompt_full_ratio_max": 0.70,
    "mmsa_train_ratio_aligned_max": 0.33,
    "mmsa_train_ratio_unaligned_max": 0.20,
    "step_over_roofline_max": 2.0,
    "prompt_stage_over_full_finetune_max": 1.2,
    "mult_peak_fraction_min": 0.40,
    "wrap_overhead_max": 1.03,
    "mmgm_speedup_min": 30.0,
}
SECTIONS: tuple[str, ...] = ("mult", "reference", "stages", "backbones", "mmgm", "scaling")


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
    bandwidth_mib: int = 256
    mmgm_batch: int = 64
    scaling_modalities: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    scaling_batch: int = 32
    scaling_steps: int = 20
    scaling_width: int = 16
    prompt_length: int = 16
    reference_details: bool = True  # MMSA's roofline and peak memory too (False: ours only; unaligned, minutes)
    stages_recipe: str = "recipes/mult-synth.toml"
    stages_epochs: int = 2
    stages_sizes: dict[str, int] = field(default_factory=dict)  # {} = the recipe's own split sizes
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
    def tiny(cls, **overrides: Any) -> SpeedConfig:
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
            bandwidth_mib=4,
            stages_epochs=1,
            stages_sizes={"train": 16, "valid": 8, "test": 8},
            mmgm_batch=4,
            scaling_modalities=(2, 3),
            scaling_batch=4,
            scaling_steps=5,
            scaling_width=8,
            prompt_length=4,
        )
        base.update(overrides)
        return cls(**base)


# --- the whole run -------------------------------------------------------------------------------


def run(cfg: SpeedConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure everything ``cfg.sections`` names; returns the JSON-ready result dict."""
    device = torch.device(cfg.device)
    result: dict[str, Any] = {
        "machine": {**machine_info(device), "load_average_start": load_average()},
        "config": dataclasses.asdict(cfg),
        "goals": dict(GOALS),
    }
    dtype = torch.bfloat16 if autocast_for(device, cfg.autocast) is not contextlib.nullcontext else torch.float32
    result["matmul"] = matmul_rate(device, cfg.matmul_size, cfg.repeats, dtype)
    peak = result["matmul"]["flops_per_s"]
    log(f"dense {result['matmul']['dtype']} matmul {cfg.matmul_size}^3: {peak / 1e9:.1f} GFLOP/s")
    result["bandwidth"] = memory_bandwidth(device, cfg.bandwidth_mib, cfg.repeats)
    log(f"copy bandwidth: {result['bandwidth']['bytes_per_s'] / 1e9:.1f} GB/s")

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
    if "reference" in cfg.sections:
        result["reference"] = []
        for shape in cfg.shapes:
            log(f"MulT against MMSA {MMSA_VERSION}'s / {shape} ...")
            result["reference"].append(measure_reference(cfg, device, shape, peak, result["bandwidth"]["bytes_per_s"]))
    result["backbones"] = [r for r in rows if not r["compiled"]] if "backbones" in cfg.sections else []
    if "stages" in cfg.sections:
        log(f"the stages of {cfg.stages_recipe}, {cfg.stages_epochs} epochs each ...")
        result["stages"] = measure_stages(cfg)
    if "mmgm" in cfg.sections:
        log("MMGM vectorised vs per-sample loop ...")
        result["mmgm"] = [measure_mmgm(cfg, device, shape) for shape in cfg.shapes]
    if "scaling" in cfg.sections:
        log("scaling in the number of modalities ...")
        result["scaling"] = measure_scaling(cfg, device)
    result["machine"]["load_average_end"] = load_average()
    return result


def write_results(result: dict[str, Any], path: Path) -> dict[str, Path]:
    """The JSON file, and beside it the scaling plot when the run has one."""
    written = {"json": write_json(path, result)}
    if result.get("scaling"):
        written["png"] = plot_scaling(result["scaling"], path.with_name(path.stem + "_scaling.png"))
    return written


# --- command line --------------------------------------------------------------------------------


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
    p.add_argument("--no-reference-details", action="store_true",
                   help="roofline and peak memory of our step only, not MMSA's (its unaligned step takes minutes)")
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
        reference_details=not args.no_reference_details,
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
"""``python -m benchmarks.speed_targets``: the speed targets, before → after, from measured files.

Reads, for the code after and (``--before-dir``) before a change, the main job's record
(``main_job.json``, :mod:`benchmarks.main_job`), a speed run (``speed_cpu.json``,
:mod:`benchmarks.speed`), Table 1's record (``table1.json``) and a test-suite timing
(``suite.json``: ``{"seconds": ..., "tests": ...}``, written by ``--suite-seconds``), and writes the
table of targets into ``benchmarks/results/speed_cpu.json`` under ``"targets"``, from which the
README's speed table is generated. Every figure is one of those files' measurements; a ratio comes
from one run (its numerator and denominator timed side by side).

    python -m benchmarks.speed_targets --before-dir benchmarks/results/before
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import RESULTS_DIR, write_json

# target -> (goal, "max"/"min", unit); the figures come from read_figures
GOALS: dict[str, tuple[float, str, str]] = {
    "main job wall time": (180.0, "max", "s"),
    "MPLMM stage / full fine-tuning stage (main job)": (1.2, "max", "x"),
    "evaluation (main job: 4 models x 10 settings x 4000 samples)": (30.0, "max", "s"),
    "MulT train step / MMSA's, aligned": (0.33, "max", "x"),
    "MulT train step / MMSA's, unaligned": (0.20, "max", "x"),
    "MulT train step / its roofline, aligned": (2.0, "max", "x"),
    "MulT train step / its roofline, unaligned": (2.0, "max", "x"),
    "Table 1, CPU default": (15.0, "max", "min"),
    "test suite": (200.0, "max", "s"),
    "main job peak memory": (float("nan"), "none", "MiB"),
    "MulT unaligned full train step peak memory": (float("nan"), "none", "MiB"),
}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_figures(folder: Path, speed_name: str = "speed_cpu.json") -> dict[str, float]:
    """Every target's figure that the files in ``folder`` hold (absent files give no figure)."""
    out: dict[str, float] = {}
    job = _load(folder / "main_job.json")
    if job:
        s = job["seconds"]
        out["main job wall time"] = job["wall_seconds"]
        out["MPLMM stage / full fine-tuning stage (main job)"] = s["mplmm_s"] / s["full_finetune_s"]
        out["evaluation (main job: 4 models x 10 settings x 4000 samples)"] = s["eval_s"]
        if job.get("peak_rss_mib"):
            out["main job peak memory"] = job["peak_rss_mib"]
    speed = _load(folder / speed_name)
    if speed:
        for r in speed.get("mult", []):
            if r["shape"] == "unaligned" and not r["compiled"]:
                out["MulT unaligned full train step peak memory"] = r["full_mem_mib"]
        for r in speed.get("reference", []):  # the same full train step of MulT, measured beside MMSA's
            if "train_ratio" in r:
                out[f"MulT train step / MMSA's, {r['shape']}"] = r["train_ratio"]
            out[f"MulT train step / its roofline, {r['shape']}"] = r["step_over_roofline"]["ours"]
            if r["shape"] == "unaligned" and "ours" in r.get("peak_mib", {}):
                out["MulT unaligned full train step peak memory"] = r["peak_mib"]["ours"]
    table1 = _load(folder / "table1.json")
    if table1:
        out["Table 1, CPU default"] = table1["seconds"] / 60
    suite = _load(folder / "suite.json")
    if suite:
        out["test suite"] = suite["seconds"]
    return out


def targets(before: dict[str, float], after: dict[str, float]) -> list[dict[str, Any]]:
    """One row per target: goal, before, after, met (None where there is no goal or no figure)."""
    rows = []
    for name, (goal, kind, unit) in GOALS.items():
        b, a = before.get(name), after.get(name)
        met = None if a is None or kind == "none" else (a <= goal if kind == "max" else a >= goal)
        rows.append({"target": name, "goal": None if kind == "none" else goal, "unit": unit, "before": b,
                     "after": a, "met": met})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed_targets", description=__doc__.split("\n\n")[0])
    p.add_argument("--before-dir", type=Path, required=True, help="the files measured on the code before")
    p.add_argument("--after-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--before-commit", default=None, help="the commit the before figures were measured on")
    p.add_argument("--suite-seconds", type=float, default=None, help="record this suite time in after-dir/suite.json")
    p.add_argument("--suite-tests", type=int, default=None)
    args = p.parse_args(argv)
    if args.suite_seconds is not None:
        write_json(args.after_dir / "suite.json", {"seconds": args.suite_seconds, "tests": args.suite_tests})
    speed_path = args.after_dir / "speed_cpu.json"
    speed = _load(speed_path)
    if speed is None:
        raise SystemExit(f"{speed_path} is missing: run python -m benchmarks.speed first")
    rows = targets(read_figures(args.before_dir), read_figures(args.after_dir))
    speed["targets"] = {"before_commit": args.before_commit, "rows": rows}
    write_json(speed_path, speed)
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{r['target']}: {fmt(r['before'])} -> {fmt(r['after'])} {r['unit']} (goal {r['goal']}; met {r['met']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

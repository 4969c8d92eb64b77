"""``python -m benchmarks.table3``: the paper's Table 3 — each prompt type alone, in pairs, and all three.

The three prompt types of MPLMM switch on and off through ``[prompt.prompter]``: ``generative``
(PG, with MMGM), ``signal`` (PMS) and ``type`` (PMT). Their 2^3 combinations are one
``promptkit sweep`` grid, each cell the prompt stage of Table 1's setting (the shipped pre-trained
MulT of ``mult-synth``, adapted on the target at ``[prompt] eta``) for each training seed, all scored
on the same fixed masks of the test split. The all-off row is the frozen backbone whose head alone
trains at eta: the head-only control (the paper's all-off row is its MD figure, full fine-tuning at
eta; ours is not that). Reported per row, averaged over the six missing cases: ACC-7, ACC, F1 (on
non-zero labels), MAE and Corr, mean ± std over seeds; the accuracy difference to the all-off row
paired by seed (mean ± SE over seeds); and whether the paper's ordering holds (each type alone
beats all-off, each pair beats both its singles, all three beat every other row). The paper's
CMU-MOSI columns are printed beside, labelled as the paper's. Synthetic data, NOT CMU-MOSI.

Resumable (the sweep's cells are read back when finished):

    python -m benchmarks.table3                        # CPU-sized default, 2 processes
    python -m benchmarks.table3 --seeds 0 --quick      # seconds: the code path only
    python -m benchmarks.table3 --full --device cuda   # the recipe's own sizes and epochs
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptkit.reference import TABLE1_MOSI, TABLE3_COLUMNS, TABLE3_MOSI

from . import _sweeps
from ._common import RESULTS_DIR, machine_info, write_csv, write_json

TYPES = ("generative", "signal", "type")
SHORT = {"generative": "PG", "signal": "PMS", "type": "PMT"}
AXES = {f"prompt.prompter.{t}": [False, True] for t in TYPES}
ROWS: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1),
                                          (1, 1, 1))
"""The paper's row order, then the full method."""


def row_name(key: Sequence[int]) -> str:
    on = [SHORT[t] for t, k in zip(TYPES, key) if k]
    if not on:
        return "all off (head only)"
    return "+".join(on) + (" (MPLMM)" if len(on) == 3 else "")


def _point(key: Sequence[int]) -> tuple[str, ...]:
    return tuple("true" if k else "false" for k in key)  # the CSV's spelling of each axis value


def summarize(rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Per row: the five metrics (mean ± std over seeds), the paired accuracy difference to the
    all-off row, the paper's MOSI figures; and the ordering checks."""
    points = _sweeps.summarize(rows, list(AXES))
    if any(_point(k) not in points for k in ROWS):
        missing = [row_name(k) for k in ROWS if _point(k) not in points]
        raise ValueError(f"the sweep has no results for rows {missing}")
    off = points[_point((0, 0, 0))]
    table: dict[str, Any] = {}
    for key in ROWS:
        entry = points[_point(key)]
        paper = TABLE3_MOSI.get(key)
        if key == (1, 1, 1):  # Table 1's "Ours" average: acc and F1 only
            paper = (None, *TABLE1_MOSI["Ours"][-1], None, None)
        table[row_name(key)] = {
            "on": dict(zip(TYPES, map(bool, key))), "metrics": entry,
            "vs_all_off": _sweeps.paired_over_seeds(entry, off) if key != (0, 0, 0) else None,
            "paper_mosi": dict(zip(TABLE3_COLUMNS, paper)) if paper else None,
        }
    return {"rows": table, "checks": ordering_checks(points)}


def ordering_checks(points: dict[tuple[str, ...], dict[str, Any]]) -> dict[str, Any]:
    """The paper's claims as paired accuracy differences (mean ± SE over seeds): every single type
    minus all-off, every pair minus each of its singles, the full method minus every other row."""
    def diff(a, b):
        d = _sweeps.paired_over_seeds(points[_point(a)], points[_point(b)])
        return {"a": row_name(a), "b": row_name(b), **d, "holds": d["mean"] > 0}

    singles = [k for k in ROWS if sum(k) == 1]
    pairs = [k for k in ROWS if sum(k) == 2]
    checks = {
        "single_beats_all_off": [diff(s, (0, 0, 0)) for s in singles],
        "pair_beats_its_singles": [diff(p, s) for p in pairs for s in singles if all(x <= y for x, y in zip(s, p))],
        "full_beats_every_row": [diff((1, 1, 1), k) for k in ROWS if k != (1, 1, 1)],
    }
    return {name: {"holds": all(c["holds"] for c in cs), "comparisons": cs} for name, cs in checks.items()}


def print_table(summary: dict[str, Any], data_label: str, seeds: Sequence[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Table 3 — six-case average, mean ± std over seeds {list(seeds)}; {data_label}")
    for col in ("prompts", *TABLE3_COLUMNS, "acc − all off (paired, ± SE)"):
        table.add_column(col, justify="left" if col == "prompts" else "right")
    for name, row in summary["rows"].items():
        m = row["metrics"]
        digits = {k: 3 if k in ("mae", "corr") else 1 for k in TABLE3_COLUMNS}
        fmt = lambda k: f"{m[k]['mean']:.{digits[k]}f}±{m[k]['std']:.{digits[k]}f}"
        vs = row["vs_all_off"]
        table.add_row(name, *[fmt(k) for k in TABLE3_COLUMNS], f"{vs['mean']:+.2f} ± {vs['se']:.2f}" if vs else "–")
        if row["paper_mosi"]:
            table.add_row("  paper, CMU-MOSI", *[("–" if v is None else f"{v:g}") for v in row["paper_mosi"].values()],
                          "", style="dim")
    Console(width=max(Console().width, 140)).print(table)
    for name, check in summary["checks"].items():
        worst = min(check["comparisons"], key=lambda c: c["mean"])
        print(f"{name}: {'holds' if check['holds'] else 'does NOT hold'} "
              f"(smallest: {worst['a']} − {worst['b']} = {worst['mean']:+.2f} ± {worst['se']:.2f})")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.table3", description=__doc__.split("\n\n")[0])
    _sweeps.add_common_args(p, "runs/table3")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows, label = _sweeps.run_grid(args, AXES)
    summary = summarize(rows)
    payload = {"benchmark": "table3", "backbone": args.backbone, "setting": _sweeps.setting_name(args),
               "seeds": args.seeds, "data": label,
               "all_off_is": "head-only control at [prompt] eta (not the paper's MD)",
               **summary, **_sweeps.measured_time(args, time.perf_counter() - t0), "machine": machine_info(args.device),
               "paper": {"source": "MPLMM Table 3 (and Table 1 'Ours' for the full row), CMU-MOSI: the paper's data"}}
    if not args.quiet:
        print_table(summary, label, args.seeds)
        print(f"{payload['seconds']:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "table3.json", payload)
    write_csv(args.out / "table3.csv", ["row", *TYPES, *[f"{k}_{s}" for k in TABLE3_COLUMNS for s in ("mean", "std")],
                                        "acc_vs_all_off", "acc_vs_all_off_se"],
              [[name, *[int(v) for v in row["on"].values()],
                *[row["metrics"][k][s] for k in TABLE3_COLUMNS for s in ("mean", "std")],
                *((row["vs_all_off"]["mean"], row["vs_all_off"]["se"]) if row["vs_all_off"] else ("", ""))]
               for name, row in summary["rows"].items()])
    return payload


if __name__ == "__main__":
    main()

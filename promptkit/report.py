"""Result tables (rich), JSON/CSV files and PNG plots for the missing-modality protocol."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

from ._atomic import atomic_write_bytes
from .reference import TABLE1_CASES, TABLE1_MOSI
from .train.protocol import ProtocolResult

# (accuracy key, F1 key) that the paper's Table 1 reports, per metric kind
ACC_F1_KEYS: dict[str, tuple[str, str]] = {
    "mosi": ("non0_acc2", "non0_f1"),
    "mosei": ("non0_acc2", "non0_f1"),
    "sims": ("acc2", "f1"),
    "iemocap_binary": ("avg_acc", "avg_f1"),
    "classification": ("acc", "f1"),
}
CASE_COLUMNS: tuple[str, ...] = TABLE1_CASES + ("complete",)


def table1_rows(results: Mapping[str, ProtocolResult], kind: str, with_paper: bool = True) -> list[list[str]]:
    """Rows ``[label, metric, {a}, {v}, {t}, {a,v}, {a,t}, {t,v}, avg, complete]`` in %, acc and F1."""
    rows = []
    for label, r in results.items():
        for name, key in zip(("acc", "F1"), ACC_F1_KEYS[kind]):
            rows.append([label, name] + [f"{100 * r.cases[c][key]:.2f}" if c in r.cases else "-" for c in CASE_COLUMNS])
    if with_paper and kind in ("mosi", "mosei"):
        for i, name in enumerate(("acc", "F1")):
            paper = [f"{pair[i]:.2f}" for pair in TABLE1_MOSI["Ours"]]
            rows.append(["paper MPLMM (CMU-MOSI)", name] + paper + ["-"])
    return rows


def print_table1(results: Mapping[str, ProtocolResult], kind: str, data_description: str) -> None:
    """A Table-1 shaped rich table: available-modality cases as columns, acc and F1 rows (%)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Test split, fixed missing cases ({a} = only audio available), %", caption=f"ours on: {data_description}; the paper's row is its printed CMU-MOSI figure")
    table.add_column("model")
    table.add_column("")
    for c in CASE_COLUMNS:
        table.add_column(c, justify="right")
    for row in table1_rows(results, kind):
        table.add_row(*row, end_section=row[1] == "F1")
    Console(width=max(Console().width, 120)).print(table)


def print_rate_sweep(results: Mapping[str, ProtocolResult], kind: str) -> None:
    from rich.console import Console
    from rich.table import Table

    acc = ACC_F1_KEYS[kind][0]
    rates = sorted(next(iter(results.values())).rates)
    table = Table(title=f"Test split, missing-rate sweep ({acc}, %), masks seeded per rate")
    table.add_column("model")
    for r in rates:
        table.add_column(f"{int(round(r * 100))}%", justify="right")
    for label, res in results.items():
        table.add_row(label, *[f"{100 * res.rates[r][acc]:.2f}" for r in rates])
    Console().print(table)


def save_protocol_results(out_dir: Path, results: Mapping[str, ProtocolResult], extra: Mapping | None = None) -> None:
    """``protocol.json`` (everything) and ``protocol.csv`` (one row per model x case/rate x metric)."""
    payload = {"results": {k: r.to_dict() for k, r in results.items()}, **(extra or {})}
    atomic_write_bytes(out_dir / "protocol.json", json.dumps(payload, indent=2).encode())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "protocol", "setting", "metric", "value"])
    for label, r in results.items():
        for case, metrics in r.cases.items():
            for k, v in metrics.items():
                w.writerow([label, "case", case, k, f"{v:.6f}"])
        for rate, metrics in r.rates.items():
            for k, v in metrics.items():
                w.writerow([label, "missing_rate", rate, k, f"{v:.6f}"])
    atomic_write_bytes(out_dir / "protocol.csv", buf.getvalue().encode())


def plot_rate_sweep(path: Path, results: Mapping[str, ProtocolResult], kind: str, title: str) -> None:
    """PNG: accuracy against test missing rate, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = ACC_F1_KEYS[kind][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, r in results.items():
        rates = sorted(r.rates)
        ax.plot([100 * x for x in rates], [100 * r.rates[x][acc] for x in rates], marker="o", label=label)
    ax.set_xlabel("test missing rate (%)")
    ax.set_ylabel(f"{acc} (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def rows_to_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue().encode()

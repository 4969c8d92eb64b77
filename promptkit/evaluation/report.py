"""Result tables (rich), JSON/CSV files and PNG plots for the missing-modality protocol.

Case columns follow the data's :class:`~promptkit.modalities.ModalitySet`: its incomplete cases in
the paper's Table-1 order (``{a} {v} {t} {a,v} {a,t} {t,v}``) when the modalities are text, audio
and vision, otherwise by case id; then ``avg`` and ``complete``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

from .._atomic import atomic_write_bytes
from ..modalities import DEFAULT_MODALITIES, ModalitySet
from ..reference import TABLE1_CASES, TABLE1_MOSI
from .paired import PairedDifference
from .protocol import AVG, COMPLETE, ProtocolResult

__all__ = [
    "ACC_F1_KEYS",
    "case_columns",
    "paired_rows",
    "paired_to_csv",
    "plot_paired",
    "plot_rate_sweep",
    "print_paired",
    "print_rate_sweep",
    "print_table1",
    "rows_to_csv",
    "save_paired_results",
    "save_protocol_results",
    "table1_columns",
    "table1_rows",
]

# (accuracy key, F1 key) that the paper's Table 1 reports, per metric kind
ACC_F1_KEYS: dict[str, tuple[str, str]] = {
    "mosi": ("non0_acc2", "non0_f1"),
    "mosei": ("non0_acc2", "non0_f1"),
    "sims": ("acc2", "f1"),
    "iemocap_binary": ("avg_acc", "avg_f1"),
    "classification": ("acc", "f1"),
}
PAPER_CASES: tuple[str, ...] = tuple(c for c in TABLE1_CASES if c != AVG)
"""The paper's Table-1 case order for text / audio / vision."""
Comparisons = Mapping[str, Mapping[str, PairedDifference]]
"""Comparison label (``"prompts − zero-fill"``) → setting → :class:`PairedDifference`."""


# --------------------------------------------------------------------------- columns


def _is_paper_set(names: Sequence[str]) -> bool:
    return set(names) == set(DEFAULT_MODALITIES) and len(names) == len(DEFAULT_MODALITIES)


def case_columns(modalities: ModalitySet | Sequence[str]) -> list[str]:
    """The incomplete cases' names: the paper's order for text/audio/vision, else by case id."""
    ms = modalities if isinstance(modalities, ModalitySet) else ModalitySet(modalities)
    return list(PAPER_CASES) if _is_paper_set(ms.names) else [c.name for c in ms.incomplete_cases]


def _modalities(results: Mapping[str, ProtocolResult], modalities: Sequence[str] | None) -> tuple[str, ...]:
    if modalities is not None:
        return tuple(modalities)
    return next((tuple(r.modalities) for r in results.values() if r.modalities), ())


def table1_columns(results: Mapping[str, ProtocolResult], modalities: Sequence[str] | None = None) -> list[str]:
    """Case columns + ``avg`` + ``complete``; the modalities come from the results when not given.

    Results read from old JSON files without modalities fall back to their own case names.
    """
    mods = _modalities(results, modalities)
    if mods:
        cases = case_columns(mods)
    else:
        first = next(iter(results.values()), None)
        cases = first.case_names if first is not None else []
        cases = list(PAPER_CASES) if set(cases) == set(PAPER_CASES) else cases
    return [*cases, AVG, COMPLETE]


def _shows_paper(results: Mapping[str, ProtocolResult], kind: str, modalities: Sequence[str] | None) -> bool:
    """The paper's CMU-MOSI row fits only text/audio/vision data with MOSI/MOSEI metrics."""
    return kind in ("mosi", "mosei") and table1_columns(results, modalities)[:-2] == list(PAPER_CASES)


# --------------------------------------------------------------------------- protocol tables


def table1_rows(
    results: Mapping[str, ProtocolResult],
    kind: str,
    with_paper: bool = True,
    modalities: Sequence[str] | None = None,
) -> list[list[str]]:
    """Rows ``[label, metric, *cases, avg, complete]`` in %, one acc and one F1 row per model.

    The paper's MPLMM rows (CMU-MOSI, as printed) are appended when ``with_paper`` and the data
    is text/audio/vision with ``kind`` ``mosi``/``mosei``.
    """
    columns = table1_columns(results, modalities)
    rows = []
    for label, r in results.items():
        for name, key in zip(("acc", "F1"), ACC_F1_KEYS[kind]):
            rows.append([label, name] + [f"{100 * r.cases[c][key]:.2f}" if c in r.cases else "-" for c in columns])
    if with_paper and _shows_paper(results, kind, modalities):
        for i, name in enumerate(("acc", "F1")):
            paper = [f"{pair[i]:.2f}" for pair in TABLE1_MOSI["Ours"]]
            rows.append(["paper MPLMM (CMU-MOSI)", name] + paper + ["-"])
    return rows


def print_table1(
    results: Mapping[str, ProtocolResult], kind: str, data_description: str, modalities: Sequence[str] | None = None
) -> None:
    """A Table-1 shaped rich table: available-modality cases as columns, acc and F1 rows (%)."""
    from rich.console import Console
    from rich.table import Table

    paper = _shows_paper(results, kind, modalities)
    table = Table(
        title="Test split, fixed missing cases (a case lists the available modalities by initial), %",
        caption=f"ours on: {data_description}" + ("; the paper's row is its printed CMU-MOSI figure" if paper else ""),
    )
    table.add_column("model")
    table.add_column("")
    for c in table1_columns(results, modalities):
        table.add_column(c, justify="right")
    for row in table1_rows(results, kind, modalities=modalities):
        table.add_row(*row, end_section=row[1] == "F1")
    Console(width=max(Console().width, 120)).print(table)


def print_rate_sweep(results: Mapping[str, ProtocolResult], kind: str) -> None:
    """A rich table of accuracy (%) against test missing rate, one row per model."""
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
    out_dir = Path(out_dir)
    payload = {"results": {k: r.to_dict() for k, r in results.items()}, **(extra or {})}
    atomic_write_bytes(out_dir / "protocol.json", json.dumps(payload, indent=2).encode())
    rows = []
    for label, r in results.items():
        for case, metrics in r.cases.items():
            rows += [[label, "case", case, k, f"{v:.6f}"] for k, v in metrics.items()]
        for rate, metrics in r.rates.items():
            rows += [[label, "missing_rate", rate, k, f"{v:.6f}"] for k, v in metrics.items()]
    atomic_write_bytes(out_dir / "protocol.csv", rows_to_csv(["model", "protocol", "setting", "metric", "value"], rows))


def _save_png(path: Path, fig) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rate_sweep(path: Path, results: Mapping[str, ProtocolResult], kind: str, title: str) -> None:
    """PNG: accuracy against test missing rate, one line per model."""
    plt = _pyplot()
    acc = ACC_F1_KEYS[kind][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, r in results.items():
        rates = sorted(r.rates)
        ax.plot([100 * x for x in rates], [100 * r.rates[x][acc] for x in rates], marker="o", label=label)
    ax.set_xlabel("test missing rate (%)")
    ax.set_ylabel(f"{acc} (%)")
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(path, fig)


# --------------------------------------------------------------------------- paired differences


def _paired_columns(comparisons: Comparisons, columns: Sequence[str] | None) -> list[str]:
    """Default: the first comparison's cases (in the paper's order for text/audio/vision), avg, complete."""
    if columns is not None:
        return list(columns)
    first = next(iter(comparisons.values()), {})
    cases = [s for s in first if not s.startswith("rate=") and s not in (AVG, COMPLETE)]
    cases = list(PAPER_CASES) if set(cases) == set(PAPER_CASES) else cases
    return cases + [s for s in (AVG, COMPLETE) if s in first]


def paired_rows(comparisons: Comparisons, columns: Sequence[str] | None = None, fmt: str = ".2f") -> list[list[str]]:
    """Rows ``[label, *cells]`` with cells ``"+1.23 ± 0.45"`` (mean ± SE), ``"-"`` where absent."""
    cols = _paired_columns(comparisons, columns)
    return [[label, *(format(d[c], fmt) if c in d else "-" for c in cols)] for label, d in comparisons.items()]


def _metric_label(comparisons: Comparisons) -> str:
    d = next((d for c in comparisons.values() for d in c.values()), None)
    return "" if d is None else f"{d.metric}" + (f", {d.unit}" if d.unit else "")


def print_paired(
    comparisons: Comparisons, data_description: str = "", columns: Sequence[str] | None = None
) -> None:
    """A rich table of paired differences: one row per comparison, cases + avg + complete as columns."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Paired differences on identical masks ({_metric_label(comparisons)}), mean ± SE",
        caption=(f"ours on: {data_description}; " if data_description else "")
        + "avg = the incomplete cases averaged per sample",
    )
    table.add_column("comparison")
    for c in _paired_columns(comparisons, columns):
        table.add_column(c, justify="right")
    for row in paired_rows(comparisons, columns):
        table.add_row(*row)
    Console(width=max(Console().width, 170)).print(table)


def paired_to_csv(comparisons: Comparisons) -> bytes:
    """One row per comparison x setting: ``comparison, setting, metric, mean, se, ci_low, ci_high, n, method, unit``."""
    columns = ["comparison", "setting", "metric", "mean", "se", "ci_low", "ci_high", "n", "method", "unit"]
    rows = [
        [label, s, d.metric, f"{d.mean:.6f}", f"{d.se:.6f}", f"{d.ci_low:.6f}", f"{d.ci_high:.6f}", d.n, d.method, d.unit]
        for label, diffs in comparisons.items()
        for s, d in diffs.items()
    ]
    return rows_to_csv(columns, rows)


def save_paired_results(out_dir: Path, comparisons: Comparisons, stem: str = "paired") -> None:
    """``<stem>.json`` (comparison → setting → :meth:`PairedDifference.to_dict`) and ``<stem>.csv``."""
    out_dir = Path(out_dir)
    payload = {label: {s: d.to_dict() for s, d in diffs.items()} for label, diffs in comparisons.items()}
    atomic_write_bytes(out_dir / f"{stem}.json", json.dumps(payload, indent=2).encode())
    atomic_write_bytes(out_dir / f"{stem}.csv", paired_to_csv(comparisons))


def plot_paired(path: Path, comparisons: Comparisons, title: str, columns: Sequence[str] | None = None) -> None:
    """PNG: each comparison's paired difference per setting with ±2 SE error bars, and a zero line."""
    plt = _pyplot()
    cols = _paired_columns(comparisons, columns)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(cols) + 2), 4))
    k = max(len(comparisons), 1)
    width = 0.7 / k
    for j, (label, diffs) in enumerate(comparisons.items()):
        xs = [i + (j - (k - 1) / 2) * width for i, c in enumerate(cols) if c in diffs]
        means = [diffs[c].mean for c in cols if c in diffs]
        errs = [2 * diffs[c].se if math.isfinite(diffs[c].se) else 0.0 for c in cols if c in diffs]
        ax.errorbar(xs, means, yerr=errs, fmt="o", capsize=3, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_xlabel("test setting (available modalities; avg = incomplete cases averaged)")
    d = next((d for c in comparisons.values() for d in c.values()), None)
    unit = "points" if d is None or d.unit == "points" else "metric units"
    ax.set_ylabel(f"{d.metric if d else 'metric'} difference ({unit}), ± 2 SE", fontsize=9)
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    if comparisons:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(path, fig)


def rows_to_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    """CSV bytes: a header row then ``rows``."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue().encode()

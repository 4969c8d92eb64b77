"""Result tables (rich), JSON/CSV files and PNG plots for the missing-modality protocol.

Case columns follow the data's :class:`~promptkit.modalities.ModalitySet`: its incomplete cases in
the paper's Table-1 order (``{a} {v} {t} {a,v} {a,t} {t,v}``) when the modalities are text, audio
and vision, otherwise by case id; then ``avg`` and ``complete``. Case names are the set's unique
ones (``{po,t}`` for pose + text beside physio); a caption spells the abbreviations out.

Any number of modalities: with M modalities there are ``2**M - 2`` incomplete cases (14 for
M = 4, 30 for M = 5), too many columns to read, so past the paper's six (``layout="auto"``) the
case tables are printed *long*: one row per case, grouped by how many modalities are available
(sections), with the missing modalities beside each case, and the models (or comparisons) as
columns. ``layout="wide"`` / ``"long"`` forces either; the CSV/JSON files are long in any case.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._atomic import atomic_write_bytes
from ..metrics import metric_kind
from ..modalities import DEFAULT_MODALITIES, ModalitySet
from ..reference import TABLE1_CASES, TABLE1_MOSI
from .paired import PairedDifference
from .protocol import AVG, COMPLETE, ProtocolResult

__all__ = [
    "case_columns",
    "case_ids",
    "case_size",
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
    "table1_long_rows",
    "table1_rows",
]

PAPER_CASES: tuple[str, ...] = tuple(c for c in TABLE1_CASES if c != AVG)
"""The paper's Table-1 case order for text / audio / vision."""
Comparisons = Mapping[str, Mapping[str, PairedDifference]]
"""Comparison label (``"prompts − zero-fill"``) → setting → :class:`PairedDifference`."""
WIDE_MAX_CASES = len(PAPER_CASES)
"""``layout="auto"`` prints cases as columns up to this many incomplete cases, as rows beyond."""
LAYOUTS: tuple[str, ...] = ("auto", "wide", "long")


# --------------------------------------------------------------------------- columns


def _is_paper_set(names: Sequence[str]) -> bool:
    return set(names) == set(DEFAULT_MODALITIES) and len(names) == len(DEFAULT_MODALITIES)


def case_columns(modalities: ModalitySet | Sequence[str], by_size: bool = False) -> list[str]:
    """The incomplete cases' names: the paper's order for text/audio/vision, else by case id.

    ``by_size``: ordered by the number of available modalities first (then as above), the order
    of the long tables.
    """
    ms = modalities if isinstance(modalities, ModalitySet) else ModalitySet(modalities)
    names = list(PAPER_CASES) if _is_paper_set(ms.names) else [c.name for c in ms.incomplete_cases]
    return sorted(names, key=case_size) if by_size else names


def case_size(name: str) -> int:
    """How many modalities a case name lists: ``"{a,t}"`` → 2 (0 for a non-case key such as ``avg``)."""
    return name.count(",") + 1 if name.startswith("{") and name.endswith("}") and len(name) > 2 else 0


def _header_min(h: str) -> int:
    """A long table's column width floor: its header's longest word (headers wrap, never cut)."""
    return min(max(map(len, h.split()), default=1), 14)


def _fit_width(header: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """Console width that shows every column of a long table uncropped (cells + 3 for borders)."""
    widths = [max([_header_min(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return sum(w + 3 for w in widths) + 8


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")


def _is_long(layout: str, n_cases: int) -> bool:
    _check_layout(layout)
    return layout == "long" or (layout == "auto" and n_cases > WIDE_MAX_CASES)


def _legend(modalities: Sequence[str]) -> str:
    """``"; cases by abbreviation: t = text, po = pose, ..."`` unless the set is the paper's."""
    if not modalities or _is_paper_set(modalities):
        return ""
    return "; cases by abbreviation: " + ModalitySet(modalities).abbreviation_legend()


def _missing(name: str, modalities: Sequence[str]) -> str:
    """The abbreviations a case lacks, sorted (``"{a,t}"`` of text/audio/vision → ``"v"``); ``""`` if unknown."""
    if not modalities or not name.startswith("{"):
        return ""
    ms = ModalitySet(modalities)
    try:
        case = ms.case(name)
    except KeyError:
        return ""
    return ",".join(sorted(ms.abbrevs[m] for m in case.missing))


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
    return metric_kind(kind).nonzero_accuracy and table1_columns(results, modalities)[:-2] == list(PAPER_CASES)


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
        for name, key in zip(("acc", "F1"), (metric_kind(kind).accuracy, metric_kind(kind).f1)):
            rows.append([label, name] + [f"{100 * r.cases[c][key]:.2f}" if c in r.cases else "-" for c in columns])
    if with_paper and _shows_paper(results, kind, modalities):
        for i, name in enumerate(("acc", "F1")):
            paper = [f"{pair[i]:.2f}" for pair in TABLE1_MOSI["Ours"]]
            rows.append(["paper MPLMM (CMU-MOSI)", name] + paper + ["-"])
    return rows


def table1_long_rows(
    results: Mapping[str, ProtocolResult], kind: str, modalities: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Table 1 transposed, for many modalities: ``(header, rows)``.

    Header ``["case", "missing", "<model> acc", "<model> F1", ...]``; one row per incomplete case
    (grouped by the number of available modalities, then ``avg``, ``complete``), in %, ``"-"``
    where a model lacks the case. ``missing`` lists the case's absent modalities by abbreviation.
    """
    mods = _modalities(results, modalities)
    columns = table1_columns(results, modalities)
    cases = sorted(columns[:-2], key=case_size)
    header = ["case", "missing", *(f"{label} {m}" for label in results for m in ("acc", "F1"))]
    keys = (metric_kind(kind).accuracy, metric_kind(kind).f1)
    rows = []
    for c in [*cases, AVG, COMPLETE]:
        cells = [f"{100 * r.cases[c][k]:.2f}" if c in r.cases else "-" for r in results.values() for k in keys]
        rows.append([c, _missing(c, mods), *cells])
    return header, rows


def print_table1(
    results: Mapping[str, ProtocolResult],
    kind: str,
    data_description: str,
    modalities: Sequence[str] | None = None,
    layout: str = "auto",
) -> None:
    """A Table-1 shaped rich table of acc and F1 (%) per model and case.

    ``layout``: ``"wide"`` (the paper's: cases as columns, an acc and an F1 row per model),
    ``"long"`` (:func:`table1_long_rows`: cases as rows) or ``"auto"`` (wide up to six incomplete
    cases, i.e. up to three modalities; long beyond).
    """
    from rich.console import Console
    from rich.table import Table

    columns = table1_columns(results, modalities)
    long = _is_long(layout, len(columns) - 2)
    paper = _shows_paper(results, kind, modalities) and not long
    mods = _modalities(results, modalities)
    table = Table(
        title="Test split, fixed missing cases (a case lists the available modalities by abbreviation), %",
        caption=f"ours on: {data_description}" + _legend(mods)
        + ("; the paper's row is its printed CMU-MOSI figure" if paper else ""),
    )
    width = 120
    if long:  # one column per model, "acc / F1" in each cell: four models fit in ~100 characters
        _, rows = table1_long_rows(results, kind, modalities)
        header = ["case", "missing", *(f"{label}\nacc / F1" for label in results)]
        rows = [[r[0], r[1], *(f"{r[i]} / {r[i + 1]}" for i in range(2, len(r), 2))] for r in rows]
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i < 2 else "right", min_width=_header_min(h))
        for i, row in enumerate(rows):
            nxt = rows[i + 1][0] if i + 1 < len(rows) else None
            table.add_row(*row, end_section=nxt is not None and case_size(nxt) != case_size(row[0]))
        width = max(width, _fit_width(header, rows))
    else:
        table.add_column("model")
        table.add_column("")
        for c in columns:
            table.add_column(c, justify="right")
        for row in table1_rows(results, kind, modalities=modalities):
            table.add_row(*row, end_section=row[1] == "F1")
    Console(width=max(Console().width, width)).print(table)


def print_rate_sweep(results: Mapping[str, ProtocolResult], kind: str) -> None:
    """A rich table of accuracy (%) against test missing rate, one row per model."""
    from rich.console import Console
    from rich.table import Table

    acc = metric_kind(kind).accuracy
    rates = sorted(next(iter(results.values())).rates)
    table = Table(title=f"Test split, missing-rate sweep ({acc}, %), masks seeded per rate")
    table.add_column("model")
    for r in rates:
        table.add_column(f"{int(round(r * 100))}%", justify="right")
    for label, res in results.items():
        table.add_row(label, *[f"{100 * res.rates[r][acc]:.2f}" for r in rates])
    Console().print(table)


def case_ids(results: Mapping[str, ProtocolResult]) -> dict[str, int]:
    """Case name → stable case id (:class:`~promptkit.modalities.ModalitySet`) for the results'
    modality set, ``"complete"`` included; empty when the results do not record their modalities."""
    mods = _modalities(results, None)
    if not mods:
        return {}
    ms = ModalitySet(mods)
    return {**{c.name: c.id for c in ms.incomplete_cases}, COMPLETE: ms.complete_case.id}


def save_protocol_results(out_dir: Path, results: Mapping[str, ProtocolResult], extra: Mapping | None = None) -> None:
    """``protocol.json`` (everything) and ``protocol.csv`` (one row per model x case/rate x metric).

    ``protocol.json`` also maps each case name to its stable id (``"case_ids"``), so files from
    different modality sets can be matched by id.
    """
    out_dir = Path(out_dir)
    payload = {"results": {k: r.to_dict() for k, r in results.items()}, **(extra or {})}
    ids = case_ids(results)
    if ids and "case_ids" not in payload:
        payload["case_ids"] = ids
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
    acc = metric_kind(kind).accuracy
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


def _paired_columns(comparisons: Comparisons, columns: Sequence[str] | None, by_size: bool = False) -> list[str]:
    """Default: the first comparison's cases (in the paper's order for text/audio/vision, or by
    number of available modalities with ``by_size``), avg, complete."""
    if columns is not None:
        return list(columns)
    first = next(iter(comparisons.values()), {})
    cases = [s for s in first if not s.startswith("rate=") and s not in (AVG, COMPLETE)]
    cases = list(PAPER_CASES) if set(cases) == set(PAPER_CASES) else cases
    if by_size:
        cases = sorted(cases, key=case_size)
    return cases + [s for s in (AVG, COMPLETE) if s in first]


def paired_rows(comparisons: Comparisons, columns: Sequence[str] | None = None, fmt: str = ".2f") -> list[list[str]]:
    """Rows ``[label, *cells]`` with cells ``"+1.23 ± 0.45"`` (mean ± SE), ``"-"`` where absent."""
    cols = _paired_columns(comparisons, columns)
    return [[label, *(format(d[c], fmt) if c in d else "-" for c in cols)] for label, d in comparisons.items()]


def _metric_label(comparisons: Comparisons) -> str:
    d = next((d for c in comparisons.values() for d in c.values()), None)
    return "" if d is None else f"{d.metric}" + (f", {d.unit}" if d.unit else "")


def print_paired(
    comparisons: Comparisons,
    data_description: str = "",
    columns: Sequence[str] | None = None,
    layout: str = "auto",
    modalities: Sequence[str] | None = None,
) -> None:
    """A rich table of paired differences (mean ± SE).

    ``layout``: ``"wide"`` (one row per comparison, cases + avg + complete as columns), ``"long"``
    (one row per setting, grouped by the number of available modalities, comparisons as columns)
    or ``"auto"`` (wide up to six cases, long beyond). ``modalities`` (optional) adds the
    abbreviation legend and, in the long layout, each case's missing modalities.
    """
    from rich.console import Console
    from rich.table import Table

    cols = _paired_columns(comparisons, columns)
    long = _is_long(layout, sum(1 for c in cols if case_size(c)))
    table = Table(
        title=f"Paired differences on identical masks ({_metric_label(comparisons)}), mean ± SE",
        caption=(f"ours on: {data_description}; " if data_description else "")
        + "avg = the incomplete cases averaged per sample" + _legend(tuple(modalities or ())),
    )
    width = 170
    if long:
        cols = _paired_columns(comparisons, columns, by_size=True)
        header = ["setting", *(["missing"] if modalities else []), *comparisons]
        rows = [[c, *([_missing(c, modalities)] if modalities else []),
                 *(format(d[c], ".2f") if c in d else "-" for d in comparisons.values())] for c in cols]
        for i, h in enumerate(header):
            table.add_column(h, justify="right" if i >= len(header) - len(comparisons) else "left",
                             min_width=_header_min(h))
        for i, row in enumerate(rows):
            table.add_row(*row, end_section=i + 1 < len(cols) and case_size(cols[i + 1]) != case_size(cols[i]))
        width = max(120, _fit_width(header, rows))
    else:
        table.add_column("comparison")
        for c in cols:
            table.add_column(c, justify="right")
        for row in paired_rows(comparisons, columns):
            table.add_row(*row)
    Console(width=max(Console().width, width)).print(table)


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
    many = len(cols) > WIDE_MAX_CASES + 2  # more than the paper's six cases: narrower slots, turned labels
    fig, ax = plt.subplots(figsize=(max(6.0, (0.45 if many else 0.9) * len(cols) + 2), 4.6 if many else 4))
    k = max(len(comparisons), 1)
    width = 0.7 / k
    for j, (label, diffs) in enumerate(comparisons.items()):
        xs = [i + (j - (k - 1) / 2) * width for i, c in enumerate(cols) if c in diffs]
        means = [diffs[c].mean for c in cols if c in diffs]
        errs = [2 * diffs[c].se if math.isfinite(diffs[c].se) else 0.0 for c in cols if c in diffs]
        ax.errorbar(xs, means, yerr=errs, fmt="o", capsize=3, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(cols)), cols, rotation=90 if many else 0, fontsize=7 if many else None)
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

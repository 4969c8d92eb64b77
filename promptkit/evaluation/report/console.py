"""Rich tables on the console: Table 1 (wide or long), the missing-rate sweep, paired differences.

Wide tables put the cases in columns (the paper's layout); long tables put one case per row,
grouped into sections by the number of available modalities, and widen the console so that
every column shows uncropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...metrics import metric_kind
from ..protocol import ProtocolResult
from .columns import (
    Comparisons,
    _is_long,
    _legend,
    _missing,
    _modalities,
    _paired_columns,
    _shows_paper,
    case_size,
    table1_columns,
)
from .rows import paired_rows, table1_long_rows, table1_rows

__all__ = ["print_paired", "print_rate_sweep", "print_table1"]


def _header_min(h: str) -> int:
    """A long table's column width floor: its header's longest word (headers wrap, never cut)."""
    return min(max(map(len, h.split()), default=1), 14)


def _fit_width(header: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """Console width that shows every column of a long table uncropped (cells + 3 for borders)."""
    widths = [max([_header_min(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return sum(w + 3 for w in widths) + 8


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

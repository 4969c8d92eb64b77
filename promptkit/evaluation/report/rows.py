"""Table rows as strings (pure data): Table 1 wide and long, and the paired differences.

Cells are percentages with two decimals (``"81.23"``) or ``"mean ± SE"`` (``"+1.23 ± 0.45"``),
``"-"`` where a model or comparison lacks the setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...metrics import metric_kind
from ...reference import TABLE1_MOSI
from ..protocol import AVG, COMPLETE, ProtocolResult
from .columns import (
    Comparisons,
    _missing,
    _modalities,
    _paired_columns,
    _shows_paper,
    case_size,
    table1_columns,
)

__all__ = ["paired_rows", "table1_long_rows", "table1_rows"]


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


def paired_rows(comparisons: Comparisons, columns: Sequence[str] | None = None, fmt: str = ".2f") -> list[list[str]]:
    """Rows ``[label, *cells]`` with cells ``"+1.23 ± 0.45"`` (mean ± SE), ``"-"`` where absent."""
    cols = _paired_columns(comparisons, columns)
    return [[label, *(format(d[c], fmt) if c in d else "-" for c in cols)] for label, d in comparisons.items()]

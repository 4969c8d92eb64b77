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

Modules: :mod:`.columns` (which cases, in which order, wide or long), :mod:`.rows` (table rows
as strings), :mod:`.console` (rich printing), :mod:`.files` (JSON/CSV), :mod:`.plots` (PNG).
"""

from __future__ import annotations

from .columns import (
    LAYOUTS,
    PAPER_CASES,
    WIDE_MAX_CASES,
    Comparisons,
    case_columns,
    case_ids,
    case_size,
    table1_columns,
)
from .console import print_paired, print_rate_sweep, print_table1
from .files import (
    paired_to_csv,
    rows_to_csv,
    save_paired_results,
    save_protocol_results,
)
from .plots import plot_paired, plot_rate_sweep
from .rows import paired_rows, table1_long_rows, table1_rows

__all__ = [
    "LAYOUTS",
    "PAPER_CASES",
    "WIDE_MAX_CASES",
    "Comparisons",
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

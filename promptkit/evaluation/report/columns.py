"""Which case columns a protocol table has, in which order, and how they are laid out.

Case columns follow the data's :class:`~promptkit.modalities.ModalitySet`: its incomplete cases in
the paper's Table-1 order (``{a} {v} {t} {a,v} {a,t} {t,v}``) when the modalities are text, audio
and vision, otherwise by case id; then ``avg`` and ``complete``. Past the paper's six incomplete
cases, ``layout="auto"`` lays the cases out as rows (*long*) instead of columns (*wide*).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...metrics import metric_kind
from ...modalities import DEFAULT_MODALITIES, ModalitySet
from ...reference import TABLE1_CASES
from ..paired import PairedDifference
from ..protocol import AVG, COMPLETE, ProtocolResult

__all__ = [
    "LAYOUTS",
    "PAPER_CASES",
    "WIDE_MAX_CASES",
    "Comparisons",
    "case_columns",
    "case_ids",
    "case_size",
    "table1_columns",
]

PAPER_CASES: tuple[str, ...] = tuple(c for c in TABLE1_CASES if c != AVG)
"""The paper's Table-1 case order for text / audio / vision."""
Comparisons = Mapping[str, Mapping[str, PairedDifference]]
"""Comparison label (``"prompts − zero-fill"``) → setting → :class:`PairedDifference`."""
WIDE_MAX_CASES = len(PAPER_CASES)
"""``layout="auto"`` prints cases as columns up to this many incomplete cases, as rows beyond."""
LAYOUTS: tuple[str, ...] = ("auto", "wide", "long")


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


def case_ids(results: Mapping[str, ProtocolResult]) -> dict[str, int]:
    """Case name → stable case id (:class:`~promptkit.modalities.ModalitySet`) for the results'
    modality set, ``"complete"`` included; empty when the results do not record their modalities."""
    mods = _modalities(results, None)
    if not mods:
        return {}
    ms = ModalitySet(mods)
    return {**{c.name: c.id for c in ms.incomplete_cases}, COMPLETE: ms.complete_case.id}

"""Result files: ``protocol.json`` / ``protocol.csv`` and ``<stem>.json`` / ``<stem>.csv`` of paired
differences, each written atomically. The CSV files are long: one row per model (or comparison) x
setting x metric, whatever the number of modalities.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..._atomic import atomic_write_bytes
from ..protocol import ProtocolResult
from .columns import Comparisons, case_ids

__all__ = ["paired_to_csv", "rows_to_csv", "save_paired_results", "save_protocol_results"]


def rows_to_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    """CSV bytes: a header row then ``rows``."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue().encode()


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

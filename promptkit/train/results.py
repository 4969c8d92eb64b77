"""What a fit returns and leaves behind: :class:`FitResult` and ``results.json`` / ``results.csv``."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_bytes
from .run_dir import RESULTS


@dataclass
class FitResult:
    """What :func:`fit` returns; the model holds the best-validation weights afterwards.

    Attributes:
        best_epoch: 1-based epoch of the best validation metric.
        best_valid: validation metrics (and ``loss``) at that epoch.
        test: test-split metrics (and ``loss``) with the best weights.
        history: one dict per epoch (``epoch``, ``train_loss``, ``valid_loss``, ``lr``, ``valid``,
            plug-in logs, ``seconds`` of training and ``valid_seconds`` of validation).
    """

    out_dir: Path
    primary: str
    higher_is_better: bool
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    epochs_run: int
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def write_results(out_dir: Path, result: FitResult, extra: dict[str, Any]) -> None:
    """``results.json`` (``extra`` and the result) and ``results.csv`` (one row per epoch, the
    ``valid`` metrics as ``valid_<name>`` columns, then a ``test`` row), both written atomically."""
    blob = json.dumps({**extra, **result.to_dict()}, indent=2)
    atomic_write_bytes(out_dir / f"{RESULTS}.json", blob.encode())
    rows = []
    for h in result.history:
        row = {k: v for k, v in h.items() if k != "valid"}
        row.update({f"valid_{k}": v for k, v in h["valid"].items()})
        rows.append(row)
    rows.append({"epoch": "test", **{f"test_{k}": v for k, v in result.test.items()}})
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / f"{RESULTS}.csv", buf.getvalue().encode())

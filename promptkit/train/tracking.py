"""Experiment tracking through accelerate's trackers: curves while a long run trains.

``log_with`` names the trackers, e.g. ``["csv", "tensorboard"]`` (off by default). ``"csv"`` is
promptkit's own :class:`CSVTracker` (a tidy ``metrics.csv``: one row per step, name and value, needs
nothing installed); ``"tensorboard"`` is accelerate's (needs the ``tensorboard`` package: ``pip
install 'promptkit-msa[track]'``); any other name accelerate knows (``"wandb"``, ``"mlflow"``, ...)
is passed through. Logs go to ``<run dir>/logs/<project>/``; only the main process writes them.

The training loop logs ``train/loss`` and ``train/lr`` every step and the epoch's training loss,
validation loss and validation metrics (``valid/<metric>``) at the end of each epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker

from ..trackers import check_log_with


class CSVTracker(GeneralTracker):
    """Appends ``step,name,value`` rows to ``<logging_dir>/<run_name>/metrics.csv`` and writes the
    run's configuration to ``config.json`` beside it. Rows are flushed as they are logged, so a
    person (or ``pandas.read_csv``) can follow a run while it trains."""

    name = "csv"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike) -> None:
        super().__init__()
        self.directory = Path(logging_dir) / run_name
        self.path = self.directory / "metrics.csv"
        self._file = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(["step", "name", "value"])
            self._file.flush()

    @property
    def tracker(self) -> CSVTracker:
        return self

    def store_init_configuration(self, values: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "config.json").write_text(json.dumps(values, indent=2, default=str))

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        if self._file is None:
            self.start()
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.writerow(["" if step is None else step, name, repr(float(value))
                                       if math.isfinite(value) else str(value)])
        self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def accelerate_log_with(names: Sequence[str], logging_dir: Path, project: str) -> list[Any]:
    """``log_with`` for ``Accelerator``: our CSV tracker as an instance, accelerate's by name."""
    return [CSVTracker(project, logging_dir) if n == "csv" else n for n in check_log_with(names)]


def tracker_config(identity: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A run's settings flattened to the plain values trackers accept (``stage.lr``, ``run.method``, ...)."""
    out: dict[str, Any] = {}

    def walk(d: Any, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif v is None or isinstance(v, (bool, int, float, str)):
                out[f"{prefix}{k}"] = v
            else:
                out[f"{prefix}{k}"] = json.dumps(v, default=str)

    walk({**identity, **extra}, "")
    return out

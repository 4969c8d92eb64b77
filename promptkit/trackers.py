"""The experiment trackers a stage may name in ``log_with``, and what each needs installed.

``"csv"`` is promptkit's own (:class:`promptkit.train.tracking.CSVTracker`, nothing to install);
the others are accelerate's and need their package. A recipe checks its ``log_with`` here when it
is read; the training engine builds the trackers (:mod:`promptkit.train.tracking`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

BUILTIN = ("csv",)
"""Trackers of promptkit's own."""
NEEDS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml", "aim": "aim",
         "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}
"""accelerate's trackers by name, and the package each needs."""


def check_log_with(names: Sequence[str] | None) -> list[str]:
    """The tracker names, each known and importable; an error says what to install."""
    out = []
    for name in names or ():
        if name in BUILTIN:
            out.append(name)
            continue
        if name not in NEEDS:
            raise ValueError(f"unknown tracker {name!r}; use 'csv', or one of accelerate's: {', '.join(NEEDS)}")
        if importlib.util.find_spec(NEEDS[name]) is None:
            extra = " (or: pip install 'promptkit-msa[track]')" if name == "tensorboard" else ""
            raise ValueError(f"tracker {name!r} needs the {NEEDS[name]!r} package: pip install {NEEDS[name]}{extra}")
        out.append(name)
    if len(set(out)) != len(out):
        raise ValueError(f"a tracker is named twice in log_with={list(names or ())}")
    return out

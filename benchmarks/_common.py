"""Small helpers every benchmark shares: where results go, the machine they ran on, JSON/CSV files."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from promptkit._atomic import atomic_write_bytes
from promptkit.evaluation import rows_to_csv

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """CPU model, threads, torch version and (where used) the GPU, recorded with every result."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode())
    return path


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    atomic_write_bytes(path, rows_to_csv(columns, rows))
    return path


def write_png(path: Path, fig: Any, dpi: int = 120) -> Path:
    """Save a matplotlib figure as a PNG, atomically, and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def read_finished_run(done: Path, factory: str | None = None) -> dict[str, Any] | None:
    """A finished run's ``protocol.json`` (``done``) to read back instead of re-running it, or None
    when there is none.

    Raises:
        RuntimeError: the run was produced by other code (another promptkit source or version, or
            another source of the user factory ``factory``), naming what changed and what to remove.
    """
    from promptkit.train.run_dir import code_change, code_identity

    if not done.is_file():
        return None
    run = json.loads(done.read_text())
    changed = code_change(run.get("code"), code_identity(factory), done.name)
    if changed:
        raise RuntimeError(
            f"{done} was produced by other code ({changed}), so its results are not this code's; remove "
            f"{done.parent} (or use another --work) to run it again"
        )
    return run

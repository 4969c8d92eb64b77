"""PNG plots (matplotlib, Agg backend): accuracy against test missing rate, and paired differences
per setting with ±2 SE error bars; each written atomically."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..._atomic import atomic_write_bytes
from ...metrics import metric_kind
from ..protocol import ProtocolResult
from .columns import WIDE_MAX_CASES, Comparisons, _paired_columns

__all__ = ["plot_paired", "plot_rate_sweep"]


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

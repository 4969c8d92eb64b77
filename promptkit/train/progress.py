"""What a run shows while it trains and when it ends: rich progress bars and the result table.

Everything goes to the terminal only (the bars to stderr); nothing here is written to ``out_dir``.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .results import FitResult


class ProgressBars:
    """rich progress bars (epoch, step, loss, ETA) or nothing."""

    def __init__(self, enabled: bool, epochs: int, start: int) -> None:
        self.enabled = enabled
        if not enabled:
            return
        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.epochs_task = self.bar.add_task("epochs", total=epochs, completed=start, loss="-")
        self.step_task = self.bar.add_task("epoch", total=None, loss="-")

    def __enter__(self) -> ProgressBars:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()

    def epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.enabled:
            self.bar.reset(self.step_task, total=steps, description=f"epoch {epoch}/{epochs}", loss="-")

    def step(self, loss: float) -> None:
        if self.enabled:
            self.bar.update(self.step_task, advance=1, loss=f"{loss:.4f}")

    def epoch_done(self, line: str, loss: float) -> None:
        if self.enabled:
            self.bar.update(self.epochs_task, advance=1, loss=f"{loss:.4f}")
            self.bar.console.print(line)


def print_results(result: FitResult, title: str = "test metrics (best validation epoch)") -> None:
    """A rich table of the final test metrics."""
    table = Table(title=f"{title}: epoch {result.best_epoch}, {result.out_dir}")
    table.add_column("metric")
    table.add_column("valid", justify="right")
    table.add_column("test", justify="right")
    for k, v in result.test.items():
        mark = " *" if k == result.primary else ""
        table.add_row(k + mark, f"{result.best_valid.get(k, math.nan):.4f}", f"{v:.4f}")
    Console().print(table)

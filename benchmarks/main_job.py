"""``python -m benchmarks.main_job``: run the README's main job and keep its results.

Runs ``promptkit run --recipe recipes/mult-synth.toml`` exactly as the README's first command does
(a subprocess, so nothing differs from what a user runs), times it, and copies the run's
``protocol.json`` with the wall time and the machine to ``benchmarks/results/main_job.json``, from
which the README's main-job tables are generated. Synthetic data, NOT CMU-MOSI.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._common import RESULTS_DIR, machine_info, write_json

RECIPE = "recipes/mult-synth.toml"


def record(protocol: Path, seconds: float, command: list[str], peak_rss_mib: float | None = None) -> dict:
    """The results file: the run's ``protocol.json`` plus how long the command took, its peak resident
    memory and where it ran."""
    payload = json.loads(protocol.read_text())
    payload["wall_seconds"] = seconds
    payload["peak_rss_mib"] = peak_rss_mib
    payload["command"] = " ".join(command)
    payload["machine"] = machine_info("cpu")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.main_job", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=RECIPE)
    p.add_argument("--out", type=Path, default=Path("runs/main-job"))
    p.add_argument("--results", type=Path, default=RESULTS_DIR / "main_job.json")
    args = p.parse_args(argv)
    command = ["promptkit", "run", "--recipe", args.recipe, "--out", str(args.out), "--overwrite"]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "promptkit.cli", *command[1:]], check=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux: the run's own process
    write_json(args.results, record(args.out / "protocol.json", seconds, command, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())

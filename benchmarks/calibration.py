"""Calibration of the synthetic generator's versions by ridge regression (synthetic data, NOT CMU-MOSI).

    python -m benchmarks.calibration [--versions 1 2] [--seeds 0 1 2 3 4] [--seq-len 20]
                                     [--sizes 1284 229 686] [--source-sizes 4000 500 500] [--out DIR]

For every generator version and seed: :func:`promptkit.data.make_synthetic_mosi` on the target
domain (default sizes 1284 / 229 / 686, aligned, every modality ``--seq-len`` steps, 20 by
default, not the generator's 50), then, all by closed-form ridge regression on time-averaged
features (mean over the valid, non-padding steps; :func:`promptkit.evaluation.ceiling.time_average`)
standardised with the training split's statistics, penalty from
:data:`promptkit.evaluation.ceiling.PENALTIES` chosen on the validation split (mean absolute
error, as :func:`~promptkit.evaluation.ceiling.ridge_ceilings` chooses it), scored on the test
split; accuracy = ``non0_acc2`` of ``metrics_for("mosi")``, in %:

1. per case (the six incomplete cases and ``complete``):

   * ``alone``: a ridge fit on only that case's modalities
     (:func:`~promptkit.evaluation.ceiling.ridge_ceilings`, unchanged);
   * ``zero_filled``: one ridge fit on all three modalities, tested with the missing modalities'
     raw features set to 0 before time-averaging and standardising (an all-zero sequence
     averages to 0, then standardises to ``-mean / sd``): the substitution baseline of a model
     that leans on all modalities. For ``complete`` it equals ``alone`` (same fit, same data);
   * ``headroom = alone - zero_filled`` (per seed, then mean ± sd).

2. cross-modal R^2 (%): each modality's standardised, time-averaged features predicted by a
   ridge from the other two modalities' (penalty on valid MSE), ``1 - SSE / SST`` over all its
   feature columns on the test split (SST about the test mean).

3. transfer: the same ridge on all modalities (and on text alone) fit on the *source* domain of
   the same seed (world) — smaller than the generator's default source, ``--source-sizes``
   4000 / 500 / 500, standardised with the source training statistics, penalty on the source
   validation split — scored on the target test split, against the in-domain (target-trained)
   ``alone`` figure.

Writes ``calibration.json`` under ``benchmarks/results/`` (or ``--out``) with the paper's
CMU-MOSI Table 1 LB accuracies beside it (the paper's figures on the real data set, for
comparison only; ``promptkit.reference`` holds no MS row, so only LB).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import RESULTS_DIR, machine_info, mean_std, write_json
from promptkit.data import make_synthetic_mosi
from promptkit.data.synthetic import DESCRIPTION, MODALITIES, TARGET_SIZES, VERSIONS
from promptkit.evaluation.ceiling import (
    PENALTIES,
    _predict,
    _ridge,
    ridge_ceilings,
    time_average,
)
from promptkit.metrics import metrics_for
from promptkit.modalities import ModalitySet
from promptkit.reference import SOURCE as PAPER_SOURCE
from promptkit.reference import TABLE1_CASES, TABLE1_MOSI

METRIC_KIND = "mosi"
KEY = "non0_acc2"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
CASE_ORDER: tuple[str, ...] = ("{a}", "{v}", "{t}", "{a,v}", "{a,t}", "{t,v}", "complete")
TRANSFER_CASES: tuple[str, ...] = ("complete", "{t}")
DEFAULT_SOURCE_SIZES: tuple[int, int, int] = (4000, 500, 500)


# --- ridge helpers -----------------------------------------------------------------------------------
def accuracy(pred: np.ndarray, labels: torch.Tensor) -> float:
    """``non0_acc2`` of ``metrics_for("mosi")`` in %."""
    metric = metrics_for(METRIC_KIND)
    metric.update(torch.from_numpy(np.asarray(pred, dtype=np.float64).reshape(-1)).float(), labels)
    return 100.0 * float(metric.compute()[KEY])


def averaged(data: Any) -> dict[str, dict[str, np.ndarray]]:
    """split → modality → ``(N, D_m)`` time-averaged features (valid steps only)."""
    return {s: {m: time_average(data.splits[s].features[m]) for m in data.modalities} for s in SPLITS}


def train_stats(feats: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality the training mean and sd (+1e-8), as in ``ridge_ceilings``."""
    return {m: (f.mean(0), f.std(0) + 1e-8) for m, f in feats.items()}


def standardise(feats: dict[str, np.ndarray], stats: dict[str, tuple[np.ndarray, np.ndarray]],
                modalities: Sequence[str]) -> np.ndarray:
    return np.hstack([(feats[m] - stats[m][0]) / stats[m][1] for m in modalities])


def fit_ridge(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, criterion: str = "mae") -> np.ndarray:
    """Ridge weights (intercept last), penalty from ``PENALTIES`` by the valid ``criterion`` (mae or mse)."""
    best = None
    for pen in PENALTIES:
        w = _ridge(x, y, pen)
        r = _predict(xv, w) - yv
        err = float(np.abs(r).mean() if criterion == "mae" else (r ** 2).mean())
        if best is None or err < best[0]:
            best = (err, w)
    return best[1]


# --- the three measurements --------------------------------------------------------------------------
def zero_filled(data: Any, feats: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Case → accuracy of the complete-trained ridge with the missing modalities zero-filled."""
    mods = list(data.modalities)
    stats = train_stats(feats["train"])
    labels = {s: data.splits[s].labels.double().reshape(-1, 1).numpy() for s in SPLITS}
    w = fit_ridge(standardise(feats["train"], stats, mods), labels["train"],
                  standardise(feats["valid"], stats, mods), labels["valid"])
    out = {}
    for case in ModalitySet(data.modalities).cases:
        # raw features of a missing modality all 0 → its valid-step average is 0 (time_average of zeros)
        test = {m: (f if m in case.available else np.zeros_like(f)) for m, f in feats["test"].items()}
        out["complete" if case.complete else case.name] = accuracy(
            _predict(standardise(test, stats, mods), w), data.splits["test"].labels)
    return out


def cross_modal_r2(data: Any, feats: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Modality → test R^2 (%) of its standardised features from the other two modalities'."""
    stats = train_stats(feats["train"])
    z = {s: {m: standardise(feats[s], stats, [m]) for m in data.modalities} for s in SPLITS}
    out = {}
    for m in data.modalities:
        others = [o for o in data.modalities if o != m]
        x = {s: np.hstack([z[s][o] for o in others]) for s in SPLITS}
        w = fit_ridge(x["train"], z["train"][m], x["valid"], z["valid"][m], criterion="mse")
        y = z["test"][m]
        sse = float(((_predict(x["test"], w) - y) ** 2).sum())
        sst = float(((y - y.mean(0)) ** 2).sum())
        out[m] = 100.0 * (1.0 - sse / sst)
    return out


def transfer(source: Any, target: Any) -> dict[str, float]:
    """Case (``complete``, ``{t}``) → target-test accuracy of the ridge fit on the source domain."""
    fs = averaged(source)
    ft = time_average_split(target, "test")
    stats = train_stats(fs["train"])
    labels = {s: source.splits[s].labels.double().reshape(-1, 1).numpy() for s in SPLITS}
    cases = {"complete": list(source.modalities), "{t}": ["text"]}
    out = {}
    for name in TRANSFER_CASES:
        mods = cases[name]
        w = fit_ridge(standardise(fs["train"], stats, mods), labels["train"],
                      standardise(fs["valid"], stats, mods), labels["valid"])
        out[name] = accuracy(_predict(standardise(ft, stats, mods), w), target.splits["test"].labels)
    return out


def time_average_split(data: Any, split: str) -> dict[str, np.ndarray]:
    return {m: time_average(data.splits[split].features[m]) for m in data.modalities}


def measure(version: int, seed: int, seq_len: int, sizes: Sequence[int], source_sizes: Sequence[int]) -> dict[str, Any]:
    """One version × seed: alone / zero-filled per case, cross-modal R^2, transfer."""
    lens = {m: seq_len for m in MODALITIES}
    target = make_synthetic_mosi(seed=seed, aligned=True, sizes=tuple(sizes), domain="target", seq_lens=lens,
                                 version=version)
    feats = averaged(target)
    alone = {c: 100.0 * r["metrics"][KEY] for c, r in ridge_ceilings(target, METRIC_KIND).items()}
    zf = zero_filled(target, feats)
    r2 = cross_modal_r2(target, feats)
    source = make_synthetic_mosi(seed=seed, aligned=True, sizes=tuple(source_sizes), domain="source",
                                 seq_lens=lens, version=version)
    tr = transfer(source, target)
    del source
    return {"alone": alone, "zero_filled": zf, "r2": r2, "transfer": tr}


# --- aggregation, table, JSON ------------------------------------------------------------------------
def stat(values: Sequence[float]) -> dict[str, Any]:
    mean, sd = mean_std(values)
    return {"mean": mean, "sd": sd, "per_seed": [float(v) for v in values]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-seed measurements of one version → the JSON's ``versions[v]`` entry."""
    cases = {}
    for c in CASE_ORDER:
        alone = [r["alone"][c] for r in runs]
        zf = [r["zero_filled"][c] for r in runs]
        cases[c] = {"alone": stat(alone), "zero_filled": stat(zf), "headroom": stat([a - z for a, z in zip(alone, zf)])}
    r2 = {m: stat([r["r2"][m] for r in runs]) for m in MODALITIES}
    tr = {}
    for c in TRANSFER_CASES:
        src = [r["transfer"][c] for r in runs]
        ind = [r["alone"][c] for r in runs]
        tr[c] = {"source_trained": stat(src), "in_domain": stat(ind), "gap": stat([i - s for i, s in zip(ind, src)])}
    return {"cases": cases, "r2": r2, "transfer": tr}


def paper_lb() -> dict[str, Any]:
    acc = {c: a for c, (a, _f1) in zip(TABLE1_CASES, TABLE1_MOSI["LB"])}
    out: dict[str, Any] = {"source": PAPER_SOURCE + ", Table 1, CMU-MOSI (real data), acc %", "LB": acc}
    if "MS" in TABLE1_MOSI:
        out["MS"] = {c: a for c, (a, _f1) in zip(TABLE1_CASES, TABLE1_MOSI["MS"])}
    else:
        out["note"] = "no MS row in promptkit.reference.TABLE1_MOSI; only LB"
    return out


def _pm(s: dict[str, Any]) -> str:
    return f"{s['mean']:.1f} ± {s['sd']:.1f}"


def print_tables(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 110))
    lb = payload["paper_cmu_mosi_lb"]["LB"]
    for v, res in payload["versions"].items():
        caption = (f"{payload['data']}; seeds {payload['seeds']}; target sizes {payload['sizes']}, "
                   f"seq_lens {payload['seq_len']}/{payload['seq_len']}/{payload['seq_len']}; acc = non0_acc2 %")
        table = Table(title=f"Generator version {v}: ridge calibration (mean ± sd over seeds)", caption=caption)
        for col in ("case", "alone", "zero-filled (complete-trained)", "headroom", "paper LB (CMU-MOSI)"):
            table.add_column(col, justify="left" if col == "case" else "right")
        for c, cell in res["cases"].items():
            table.add_row(c, _pm(cell["alone"]), _pm(cell["zero_filled"]), _pm(cell["headroom"]),
                          f"{lb[c]:.1f}" if c in lb else "–")
        console.print(table)
        r2 = Table(title=f"Version {v}: cross-modal R² (%) and transfer (acc %)",
                   caption=f"transfer: ridge fit on source sizes {payload['source_sizes']}, tested on target test")
        for col in ("quantity", "value"):
            r2.add_column(col, justify="left" if col == "quantity" else "right")
        for m, s in res["r2"].items():
            r2.add_row(f"R² {m} from the other two", _pm(s))
        for c, t in res["transfer"].items():
            r2.add_row(f"{c}: source-trained → target", _pm(t["source_trained"]))
            r2.add_row(f"{c}: in-domain", _pm(t["in_domain"]))
            r2.add_row(f"{c}: gap (in-domain − transfer)", _pm(t["gap"]))
        console.print(r2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.calibration", description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", type=int, nargs="+", default=list(VERSIONS), help="generator versions (default 1 2)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="data seeds (default 0-4)")
    p.add_argument("--seq-len", type=int, default=20, help="steps per modality (default 20, aligned)")
    p.add_argument("--sizes", type=int, nargs=3, default=[TARGET_SIZES[s] for s in SPLITS],
                   metavar=("TRAIN", "VALID", "TEST"), help="target sizes (default 1284 229 686)")
    p.add_argument("--source-sizes", type=int, nargs=3, default=list(DEFAULT_SOURCE_SIZES),
                   metavar=("TRAIN", "VALID", "TEST"), help="source sizes for transfer (default 4000 500 500)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"where calibration.json goes (default {RESULTS_DIR})")
    p.add_argument("--quiet", action="store_true", help="no table")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    for v in args.versions:
        if v not in VERSIONS:
            raise SystemExit(f"--versions: unknown version {v}; known {list(VERSIONS)}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    versions, seconds = {}, {}
    for v in args.versions:
        tv = time.perf_counter()
        runs = [measure(v, seed, args.seq_len, args.sizes, args.source_sizes) for seed in args.seeds]
        versions[str(v)] = summarise(runs)
        seconds[str(v)] = time.perf_counter() - tv
    total = time.perf_counter() - t0
    payload = {
        "benchmark": "calibration",
        "data": f"{DESCRIPTION}; target domain, aligned",
        "units": "accuracy = non0_acc2 in %, R^2 in %",
        "seq_len": args.seq_len,
        "seeds": list(args.seeds),
        "sizes": list(args.sizes),
        "source_sizes": list(args.source_sizes),
        "penalties": list(PENALTIES),
        "protocol": __doc__.strip(),
        "versions": versions,
        "paper_cmu_mosi_lb": paper_lb(),
        "seconds": {"total": total, "per_version": seconds},
        "machine": machine_info("cpu") | {"omp_num_threads": __import__("os").environ.get("OMP_NUM_THREADS")},
    }
    path = write_json(Path(args.out) / "calibration.json", payload)
    if not args.quiet:
        print_tables(payload)
        per = ", ".join(f"v{v} {s:.1f} s" for v, s in seconds.items())
        print(f"seq_lens {args.seq_len}/{args.seq_len}/{args.seq_len} (not the generator's default 50); "
              f"source sizes {tuple(args.source_sizes)} for transfer")
        print(f"runtime {total:.1f} s ({per}; {torch.get_num_threads()} torch thread(s)); wrote {path}")
    return payload


if __name__ == "__main__":
    main()

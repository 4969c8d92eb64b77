"""How :mod:`benchmarks.speed` shows its results: the rich tables and the scaling plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_scaling(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Two panels: prompt parameters (log scale) and step time against M."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = [r["modalities"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ms, [r["mplmm_prompt_params"] for r in rows], "o-", label="MPLMM (linear in M)")
    ax1.plot(ms, [r["per_case_prompt_params"] for r in rows], "s--", label="per-case sets (2^M - 1)")
    ax1.set_yscale("log")
    ax1.set_xlabel("modalities M")
    ax1.set_ylabel("prompt parameters")
    ax1.legend()
    ax2.plot(ms, [1000 * r["mplmm_step_s"] for r in rows], "o-", label="MPLMM")
    ax2.plot(ms, [1000 * r["per_case_step_s"] for r in rows], "s--", label="per-case sets")
    ax2.set_xlabel("modalities M")
    ax2.set_ylabel("prompt-tuning step (ms, median)")
    ax2.legend()
    fig.suptitle("Prompt cost as the number of modalities grows (toy backbone)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path



def _mark(ok: bool) -> str:
    return "[green]✓[/green]" if ok else "[red]✗[/red]"


def print_tables(result: dict[str, Any]) -> None:
    """The rich tables: MulT, every backbone, MMGM, scaling in M."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 160))
    g = result["goals"]
    peak = result["matmul"]["flops_per_s"]
    m = result["machine"]
    console.print(
        f"{m['cpu']} · {m['torch_threads']} threads · torch {m['torch']} · device {m['device']} · "
        f"load {m.get('load_average_start')} → {m.get('load_average_end')} · "
        f"dense {result['matmul']['dtype']} matmul {peak / 1e9:.1f} GFLOP/s"
    )
    if result.get("mult"):
        t = Table(title=f"MulT train step, batch {result['config']['batch']} (medians)")
        for c in ("shape", "compiled", "full s", "prompt s", f"ratio ≤{g['prompt_full_ratio_max']}", "FLOP ratio",
                  "GFLOP full/prompt", f"% peak full ≥{100 * g['mult_peak_fraction_min']:.0f}", "% peak prompt",
                  f"wrap ≤{g['wrap_overhead_max']}", "MiB full/prompt", "b1 ms (prompted)", "b256 /s (prompted)"):
            t.add_column(c, justify="right")
        for r in result["mult"]:
            t.add_row(
                r["shape"], "yes" if r["compiled"] else "no", f"{r['full_s']:.3f}", f"{r['prompt_s']:.3f}",
                f"{r['ratio']:.2f} {_mark(r['ratio'] <= g['prompt_full_ratio_max'])}", f"{r['flop_ratio']:.2f}",
                f"{r['full_flops'] / 1e9:.1f}/{r['prompt_flops'] / 1e9:.1f}",
                f"{100 * r['full_peak_fraction']:.1f} {_mark(r['full_peak_fraction'] >= g['mult_peak_fraction_min'])}",
                f"{100 * r['prompt_peak_fraction']:.1f}",
                f"{r['wrap_overhead']:.3f} {_mark(r['wrap_overhead'] <= g['wrap_overhead_max'])}",
                f"{r['full_mem_mib']:.0f}/{r['prompt_mem_mib']:.0f}",
                _fmt_pair(r, "latency", "ms"), _fmt_pair(r, "throughput", "per_s"),
            )
        console.print(t)
        _print_breakdown(console, result["mult"], peak)
    if result.get("reference"):
        _print_reference(console, result["reference"], g, result.get("bandwidth", {}))
    if result.get("stages"):
        st = result["stages"]
        t = Table(title=f"Training stages of {st['recipe']}, {st['epochs']} epochs on {st['train_samples']} samples "
                        f"(validation {st['valid_samples']}): seconds")
        for c in ("method", "wall", "training steps", "validation", "setup and the rest", "per epoch train/valid"):
            t.add_column(c, justify="right")
        for name, r in st["methods"].items():
            t.add_row(name, f"{r['wall_s']:.1f}", f"{r['train_s']:.1f}", f"{r['valid_s']:.1f}",
                      f"{r['setup_and_rest_s']:.1f}", f"{r['train_per_epoch_s']:.2f}/{r['valid_per_epoch_s']:.2f}")
        console.print(t)
        if "prompts_over_full_finetune" in st:
            ratio, goal = st["prompts_over_full_finetune"], g["prompt_stage_over_full_finetune_max"]
            console.print(f"prompt stage / full fine-tuning stage: {ratio:.2f} (goal ≤{goal}) {_mark(ratio <= goal)}; "
                          f"training steps alone {st['prompts_over_full_finetune_train']:.2f}")
    if result.get("backbones"):
        t = Table(title="Every registered backbone: train step (medians), eager")
        for c in ("backbone", "shape", "full s", "prompt s", "ratio", "FLOP ratio", "% peak full", "% peak prompt",
                  "wrap", "MiB full/prompt", "b1 ms bare/prompted", "b256 /s bare/prompted", "prompt params %"):
            t.add_column(c, justify="right")
        for r in result["backbones"]:
            t.add_row(
                r["backbone"], r["shape"], f"{r['full_s']:.3f}", f"{r['prompt_s']:.3f}",
                f"{r['ratio']:.2f} {_mark(r['ratio'] <= g['prompt_full_ratio_max'])}", f"{r['flop_ratio']:.2f}",
                f"{100 * r['full_peak_fraction']:.1f}", f"{100 * r['prompt_peak_fraction']:.1f}",
                f"{r['wrap_overhead']:.3f} {_mark(r['wrap_overhead'] <= g['wrap_overhead_max'])}",
                f"{r['full_mem_mib']:.0f}/{r['prompt_mem_mib']:.0f}",
                _fmt_pair(r, "latency", "ms", both=True), _fmt_pair(r, "throughput", "per_s", both=True),
                f"{100 * r['params']['prompt_share']:.2f}",
            )
        console.print(t)
    if result.get("mmgm"):
        t = Table(title=f"MMGM: vectorised vs a per-sample loop (goal ≥{g['mmgm_speedup_min']:.0f}x)")
        for c in ("shape", "batch", "inputs missing", "fwd ms vec/loop", "fwd speedup", "fwd+bwd ms vec/loop",
                  "fwd+bwd speedup", "max |diff|"):
            t.add_column(c, justify="right")
        for r in result["mmgm"]:
            t.add_row(
                r["shape"], str(r["batch"]), f"{100 * r['missing_fraction']:.0f}%",
                f"{1000 * r['forward_vectorised_s']:.1f}/{1000 * r['forward_loop_s']:.1f}",
                f"{r['forward_speedup']:.1f}x {_mark(r['forward_speedup'] >= g['mmgm_speedup_min'])}",
                f"{1000 * r['train_vectorised_s']:.1f}/{1000 * r['train_loop_s']:.1f}",
                f"{r['train_speedup']:.1f}x {_mark(r['train_speedup'] >= g['mmgm_speedup_min'])}",
                f"{r['max_abs_diff_vs_loop']:.1e}",
            )
        console.print(t)
    if result.get("scaling"):
        t = Table(title="Prompts as M grows (toy backbone, no MMGM)")
        for c in ("M", "cases", "MPLMM params", "per-case params", "MPLMM step ms", "per-case step ms"):
            t.add_column(c, justify="right")
        for r in result["scaling"]:
            t.add_row(str(r["modalities"]), str(r["cases"]), f"{r['mplmm_prompt_params']:,}", f"{r['per_case_prompt_params']:,}",
                      f"{1000 * r['mplmm_step_s']:.1f}", f"{1000 * r['per_case_step_s']:.1f}")
        console.print(t)


def _print_reference(console: Any, rows: Sequence[dict[str, Any]], g: dict[str, float], bandwidth: dict) -> None:
    """MulT against MMSA's MULT (same configuration, same batch, timed in turn) and each step's roofline."""
    from rich.table import Table

    gbs = bandwidth.get("bytes_per_s", float("nan")) / 1e9
    t = Table(title=f"MulT against MMSA {rows[0].get('mmsa_version', '(not installed)')}'s MULT, train step "
                    f"(medians); roofline = FLOPs at the matmul rate + bytes at {gbs:.1f} GB/s")
    for c in ("shape", "ours s", "MMSA s", "ratio (goal)", "eval fwd ours/MMSA s", "GFLOP ours/MMSA",
              "GB moved ours/MMSA", f"step/roofline ours/MMSA (≤{g['step_over_roofline_max']:.0f})",
              "peak MiB ours/MMSA"):
        t.add_column(c, justify="right")
    for r in rows:
        s, e, rl, sr, pk = r["train_step_s"], r["eval_forward_s"], r["roofline"], r["step_over_roofline"], r["peak_mib"]
        pair = lambda d, f: "/".join(f.format(d[k]) for k in ("ours", "mmsa") if k in d)  # noqa: E731
        if "train_ratio" in r:
            goal = g[f"mmsa_train_ratio_{r['shape']}_max"] if f"mmsa_train_ratio_{r['shape']}_max" in g else float("nan")
            ratio = f"{r['train_ratio']:.2f} (≤{goal:.2f}) {_mark(r['train_ratio'] <= goal)}"
        else:
            ratio = r.get("mmsa_missing", "-")
        t.add_row(r["shape"], f"{s['ours']:.3f}", f"{s['mmsa']:.3f}" if "mmsa" in s else "-", ratio,
                  pair(e, "{:.3f}"), pair({k: v["flops"] / 1e9 for k, v in rl.items()}, "{:.1f}"),
                  pair({k: v["bytes"] / 1e9 for k, v in rl.items()}, "{:.1f}"),
                  f"{pair(sr, '{:.1f}')} {_mark(sr['ours'] <= g['step_over_roofline_max'])}", pair(pk, "{:.0f}"))
    console.print(t)


def _print_breakdown(console: Any, rows: Sequence[dict[str, Any]], peak: float) -> None:
    """Share of step time per op category (profiler self time) and the GEMMs' own FLOP/s."""
    from rich.table import Table

    rows = [r for r in rows if "full_breakdown" in r]
    if not rows:
        return
    categories = list(rows[0]["full_breakdown"]["share"])
    t = Table(title="MulT train step: where the time goes (profiler self time, % of step)")
    for c in ("shape", "step", *categories, "linear-layer GEMMs % of peak"):
        t.add_column(c, justify="right")
    for r in rows:
        for step in ("full", "prompt"):
            b = r[f"{step}_breakdown"]
            t.add_row(
                r["shape"], step, *(f"{100 * b['share'][c]:.0f}" for c in categories),
                f"{100 * b.get('linear_flops_per_s', float('nan')) / peak:.0f}",
            )
    console.print(t)


def _fmt_pair(r: dict[str, Any], label: str, unit: str, both: bool = False) -> str:
    keys = [k for k in r if k.startswith(label) and k.endswith("_prompted")]
    if not keys:
        return "-"
    prompted = r[keys[0]]
    bare = r[keys[0].replace("_prompted", "_bare")]
    fmt = "{:.1f}" if unit == "ms" else "{:.0f}"
    return f"{fmt.format(bare)}/{fmt.format(prompted)}" if both else fmt.format(prompted)


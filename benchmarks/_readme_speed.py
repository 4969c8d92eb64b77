"""The speed blocks of docs/results.md (``python -m benchmarks.readme``): the targets before → after
and MulT's train step against MMSA's, its roofline and full fine-tuning, from ``speed_cpu.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._markdown import _table


def speed_targets(speed: dict[str, Any]) -> str:
    """The speed targets, before → after (``python -m benchmarks.speed_targets``)."""
    t = speed.get("targets")
    if not t:
        return "*(no targets yet: run python -m benchmarks.speed_targets)*"

    def fmt(v: Any, unit: str) -> str:
        return "–" if v is None else (f"{v:.2f}" if unit == "x" else f"{v:.0f}" if v >= 10 else f"{v:.1f}") + \
            ("" if unit == "x" else f" {unit}")

    rows = [[r["target"], "–" if r["goal"] is None else f"≤ {fmt(r['goal'], r['unit'])}", fmt(r["before"], r["unit"]),
             fmt(r["after"], r["unit"]), {True: "yes", False: "**no**", None: "–"}[r["met"]]] for r in t["rows"]]
    m = speed["machine"]
    before = f" (before: commit {t['before_commit']})" if t.get("before_commit") else ""
    return _table(["target", "goal", "before", "after", "met"], rows) + \
        f"\n\nMeasured on {m['cpu']}, {m['cores']} cores, torch {m['torch']}{before}."


def speed_steps(speed: dict[str, Any]) -> str:
    """MulT's train step per shape: beside MMSA's (one run, interleaved), against its roofline, prompt vs
    full fine-tuning, peak memory; and the main job's stages (``python -m benchmarks.speed``)."""
    out = []
    ref = speed.get("reference") or []
    if ref:
        rows = []
        for r in ref:
            st, ev, roof = r["train_step_s"], r["eval_forward_s"], r["roofline"]["ours"]
            rows.append([r["shape"], f"{st['ours']:.3f}", f"{st['mmsa']:.3f}" if "mmsa" in st else "–",
                         f"{r['train_ratio']:.2f}" if "train_ratio" in r else "–", f"{ev['ours']:.3f}",
                         f"{ev['mmsa']:.3f}" if "mmsa" in ev else "–",
                         f"{r['eval_ratio']:.2f}" if "eval_ratio" in r else "–",
                         f"{roof['roofline_s']:.3f}", f"{r['step_over_roofline']['ours']:.2f}",
                         f"{r['peak_mib']['ours']:.0f}"])
        out += [_table(["shape", "train step s (ours)", "MMSA's", "ours / MMSA's", "eval forward s (ours)", "MMSA's",
                        "ours / MMSA's", "roofline s", "step / roofline", "peak MiB (ours)"], rows), ""]
    mult = [r for r in speed.get("mult", []) if not r.get("compiled")]
    if mult:
        rows = [[r["shape"], f"{r['full_s']:.3f}", f"{r['prompt_s']:.3f}", f"{r['ratio']:.2f}", f"{r['flop_ratio']:.2f}",
                 f"{100 * r['full_peak_fraction']:.1f}", f"{r['full_mem_mib']:.0f}" if "full_mem_mib" in r else "–"]
                for r in mult]
        out += [_table(["shape", "full step s", "prompt step s", "prompt / full", "FLOP ratio", "% of matmul peak (full)",
                        "peak MiB (full)"], rows), ""]
    st = speed.get("stages")
    if st:
        rows = [[m, f"{r['wall_s']:.1f}", f"{r['train_s']:.1f}", f"{r['valid_s']:.1f}", f"{r['setup_and_rest_s']:.1f}"]
                for m, r in st["methods"].items()]
        out += [_table(["main-job stage", "wall s", "training s", "validation s", "setup and rest s"], rows), "",
                f"Prompts / full fine-tuning: {st['prompts_over_full_finetune']:.2f} wall, "
                f"{st['prompts_over_full_finetune_train']:.2f} training ({st['epochs']} epochs, {st['train_samples']} "
                "training samples).", ""]
    c, m = speed["config"], speed["machine"]
    peak, bw = speed.get("matmul", {}), speed.get("bandwidth", {})
    rate = f"dense fp32 matmul {peak['flops_per_s'] / 1e9:.0f} GFLOP/s" if "flops_per_s" in peak else ""
    bwt = f", copy bandwidth {bw['bytes_per_s'] / 1e9:.1f} GB/s" if "bytes_per_s" in bw else ""
    out.append(f"Batch {c['batch']}, CMU-MOSI shapes, MulT {_mult_config(ref, speed)}; {rate}{bwt}; measured on "
               f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}.")
    return "\n".join(out)


def _mult_config(ref: Sequence[dict[str, Any]], speed: dict[str, Any]) -> str:
    cfg = ref[0]["config"] if ref else speed["config"].get("backbone_kwargs", {}).get("mult", {})
    keys = [k for k in ("d_model", "num_heads", "layers") if k in cfg]
    return ", ".join(f"{k} {cfg[k]}" for k in keys) or "(its defaults)"

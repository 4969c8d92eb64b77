"""``python -m benchmarks.readme``: write the documents' result tables from the committed JSON.

Every measured figure in README.md and docs/results.md sits between ``<!-- BEGIN generated:NAME -->``
and ``<!-- END generated:NAME -->`` and is produced here from ``benchmarks/results/*.json``, so the
documents and the results cannot disagree. ``--check`` changes nothing and exits 1 when a document
is stale (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._common import RESULTS_DIR
from ._markdown import _pm, _table
from ._readme_speed import speed_steps, speed_targets

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = (README, ROOT / "docs" / "results.md")
"""The files whose generated blocks this module writes."""
CASES = ("{a}", "{v}", "{t}", "{a,v}", "{a,t}", "{t,v}")
METHODS = (("zero_filled", "zero-filled frozen backbone"), ("head_only", "head only (control)"),
           ("full_finetune", "full fine-tuning at η (MD)"), ("mplmm", "MPLMM prompts"))


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / name
    return json.loads(path.read_text()) if path.is_file() else None


def main_job(run: dict[str, Any]) -> str:
    """The main job's own results: per-case accuracy of each model, paired differences, headroom."""
    acc = run["metric"]
    rows = []
    for key, label in METHODS:
        c = run["results"][key]["cases"]
        rows.append([label, *(f"{100 * c[k][acc]:.1f}" for k in (*CASES, "avg", "complete"))])
    head = ["model", *CASES, "avg", "complete"]
    out = [_table(head, rows), ""]
    prow = []
    for key, label in (("mplmm_vs_zero_filled", "prompts − zero-fill"), ("mplmm_vs_head_only", "prompts − head only"),
                       ("mplmm_vs_full_finetune", "prompts − full fine-tuning")):
        p = run["paired"][key]
        prow.append([label, *(_pm(p[k], 1, True) for k in (*CASES, "avg", "complete"))])
    out += [_table(["paired difference (points, ± SE over test samples)", *CASES, "avg", "complete"], prow), ""]
    hr = run["headroom"]
    out += [_table(["", *CASES], [
        ["ridge ceiling (available modalities)", *(f"{hr[k]['ceiling']:.1f}" for k in CASES)],
        ["headroom over zero-fill", *(f"{hr[k]['headroom']:+.1f}" for k in CASES)],
        ["share recovered by the prompts", *(_share(hr[k]["share_mplmm"]) for k in CASES)],
    ])]
    secs = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in run["seconds"].items())
    rss = f", peak memory {run['peak_rss_mib']:.0f} MiB" if run.get("peak_rss_mib") else ""
    out += ["", f"`{run['command']}`: {run['wall_seconds']:.0f} s wall time on {run['machine']['cores']} cores "
                f"({run['machine']['torch_threads']} torch threads; {secs}{rss})."]
    return "\n".join(out)


def _share(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f} %"


def table2(t2: dict[str, Any]) -> str:
    """Per backbone: Com, Com†, Incom, Incom†, the controls, and the paired differences over runs."""
    rows = []
    for name, s in t2["summary"].items():
        paper = t2["paper_cmu_mosi"].get(name, {})
        pin, pout = paper.get("incom"), paper.get("incom_prompted")
        rows.append([
            name, str(s["runs"]), _pm(s["com"]), _pm(s["com_prompted"]), _pm(s["incom"]), _pm(s["incom_head_only"]),
            _pm(s["incom_full_finetune"]), _pm(s["incom_prompted"]), _pm(s["incom_prompted_vs_incom"], 2, True),
            _pm(s["incom_prompted_vs_head_only"], 2, True), _pm(s["incom_prompted_vs_full_finetune"], 2, True),
            _pm(s["com_prompted_vs_com"], 2, True),
            f"{pin:.1f} → {pout:.1f}" if pin is not None else "–",
        ])
    head = ["backbone", "runs", "Com", "Com†", "Incom", "Incom head only", "Incom full FT", "Incom†",
            "Incom† − Incom", "Incom† − head only", "Incom† − full FT", "Com† − Com", "paper Incom → Incom† (CMU-MOSI)"]
    return _table(head, rows)


def table2_verdict(t2: dict[str, Any]) -> str:
    """One line per backbone: which claims hold by the 2-SE rule over runs."""
    lines = []
    for name, s in t2["summary"].items():
        z, h, f, c = (s[k] for k in ("incom_prompted_vs_incom", "incom_prompted_vs_head_only",
                                      "incom_prompted_vs_full_finetune", "com_prompted_vs_com"))
        mark = lambda ok: "holds" if ok else "does **not** hold"
        seeds = s.get("data_seeds", [])
        scope = f"{s['runs']} runs, data seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        if s.get("pretraining_failed"):
            lines.append(f"* **{name}** ({scope}): its pre-training on the source domain **failed** (complete-data "
                         f"accuracy {_pm(s['com'])} %, chance): the row supports no claim about the prompts.")
            continue
        lines.append(
            f"* **{name}** ({scope}): prompts − zero-fill {_pm(z, 2, True)} points "
            f"({mark(s['prompts_beat_zero_fill'])}); prompts − head only {_pm(h, 2, True)} "
            f"({mark(s['prompts_beat_head_only'])}); prompts − full fine-tuning {_pm(f, 2, True)}; "
            f"complete case {_pm(c, 2, True)} ({'not hurt' if s['complete_not_hurt'] else '**hurt**'})."
        )
    return "\n".join(lines)


def table2_cases(t2: dict[str, Any]) -> str:
    """MulT per case over runs: zero-fill, head only, prompts, ceiling and share recovered."""
    s = t2["summary"]["mult"]
    rows = []
    for key, label in METHODS:
        rows.append([label, *(_pm(s["cases"][key][c]) for c in CASES)])
    if s.get("headroom"):
        rows.append(["ridge ceiling", *(_pm(s["headroom"][c]["ceiling"]) for c in CASES)])
        rows.append(["share recovered by the prompts", *(_share(s["headroom"][c]["share_mplmm"]["mean"]) for c in CASES)])
    return _table(["MulT, mean ± SE over runs", *CASES], rows)


def ablation(ab: dict[str, Any]) -> str:
    """Per variant: six-case average and the paired difference to head only, on the validation split.

    With one seed the ± is the paired SE over validation samples; with several, the SE over seeds."""
    one_seed = len(ab["seeds"]) == 1
    rows = []
    for name, e in ab["summary"].items():
        vs = e.get("vs_head_only")
        if vs and one_seed:
            vs = {"mean": vs["mean"], "se": vs["within_run_se"]}
        rows.append([f"`{name}`", "`" + json.dumps(ab["variants"][name]) + "`", _pm(e["avg"], 2),
                     *(_pm(e["cases"][c], 1) for c in ("{a}", "{v}", "{a,v}", "complete")),
                     _pm(vs, 2, True) if vs else "–",
                     f"{e['prompt_change_rel_rms']:.2f}" if e.get("prompt_change_rel_rms") is not None else "–"])
    se = "paired SE over validation samples" if one_seed else "SE over seeds"
    return _table(["variant", "settings", "six-case avg", "{a}", "{v}", "{a,v}", "complete",
                   f"− head only ({se})", "prompt change / init RMS"], rows) + (
        f"\n\nValidation split (1000 samples), training seed(s) {ab['seeds']}, `{ab['recipe']}`.")


def calibration(cal: dict[str, Any]) -> str:
    """Per generator version: ridge alone / zero-filled per case, and the paper's CMU-MOSI LB row."""
    cases = (*CASES, "complete")
    rows = []
    for version, v in sorted(cal["versions"].items()):
        for key, label in (("alone", "alone (ceiling)"), ("zero_filled", "zero-filled, complete-trained")):
            cells = []
            for c in cases:
                e = v["cases"].get(c, {}).get(key)
                cells.append("–" if e is None else f"{100 * e['mean']:.1f} ± {100 * e['sd']:.1f}"
                             if e["mean"] <= 1.0 else f"{e['mean']:.1f} ± {e['sd']:.1f}")
            rows.append([f"v{version} {label}", *cells])
    lb = (cal.get("paper_cmu_mosi_lb") or {}).get("LB")
    if lb:
        rows.append(["paper LB, CMU-MOSI (printed)", *(f"{lb[c]:.1f}" if c in lb else "–" for c in cases)])
    return _table(["synthetic target, ridge", *cases], rows) + (
        f"\n\n{len(cal['seeds'])} seeds, {cal['seq_len']}-step sequences; " + cal["data"])


def contribution(c: dict[str, Any]) -> str:
    """Removal cost of each part of the trained prompter (validation), per run and over runs."""
    parts = list(c["summary"])
    rows = [[r["run"].split("table2/")[-1], *(_pm(r["removal_cost"][q], 2, True) for q in parts)] for r in c["runs"]]
    rows.append(["mean ± SE over runs", *(_pm(c["summary"][q], 2, True) for q in parts)])
    return _table(["run", *(f"without {q[3:]}" for q in parts)], rows)


def source_size(small: dict[str, Any]) -> str:
    """MulT pre-trained on fewer source samples against the shipped 16,326-sample backbone, same runs."""
    full = _load("table2.json")
    rows = []
    cells = {(r["data_seed"], r["seed"]) for r in small["per_seed"]["mult"]}
    for label, t2 in ((f"{small['source_train']:,} source samples", small), ("16,326 (shipped)", full)):
        if t2 is None:
            continue
        runs = [r for r in t2["per_seed"]["mult"] if (r["data_seed"], r["seed"]) in cells]
        mean = lambda k: sum(r[k] for r in runs) / len(runs)
        pair = lambda k: sum(r["paired"][k]["mean"] for r in runs) / len(runs)
        rows.append([label, str(len(runs)), f"{mean('com'):.1f}", f"{mean('incom'):.1f}", f"{mean('incom_prompted'):.1f}",
                     f"{mean('incom_head_only'):.1f}", f"{pair('incom_prompted_vs_head_only'):+.2f}"])
    return _table(["MulT pre-trained on", "runs", "Com", "Incom", "Incom†", "Incom head only", "Incom† − head only"], rows)


def table1(t1: dict[str, Any]) -> str:
    """Every method's acc per case (mean ± std over seeds), F1 on the average, trainable parameters;
    the paper's CMU-MOSI row of the same method beside (accuracy), labelled as such."""
    from promptkit.reference import TABLE1_MOSI

    rows = []
    for m, s in t1["backbones"]["mult"].items():
        c = s["cases"]
        rows.append([m, *[f"{c[k]['acc']['mean']:.1f} ± {c[k]['acc']['std']:.1f}" for k in (*CASES, "avg")],
                     f"{c['avg']['f1']['mean']:.1f}", f"{c['complete']['acc']['mean']:.1f}", f"{s['trainable_params']:,}"])
        paper = s.get("paper_row")
        if paper in TABLE1_MOSI:
            rows.append([f"*paper {paper}, CMU-MOSI*", *[f"*{a:.1f}*" for a, _ in TABLE1_MOSI[paper]],
                         f"*{TABLE1_MOSI[paper][-1][1]:.1f}*", "", ""])
    table = _table(["method", *CASES, "avg", "avg F1", "complete", "trainable"], rows)
    seeds = ", ".join(str(x) for x in t1["seeds"])
    return (f"{table}\n\nMulT, seeds {seeds} ({t1['setting']} setting, {_timing(t1)}); {t1['data']}")


def _timing(payload: dict[str, Any]) -> str:
    """``"33 min on 2 CPU cores, 1 process"``: the measured wall time and how it ran."""
    jobs = payload.get("jobs")
    how = f", {jobs} process{'es' if jobs != 1 else ''}" if jobs else ""
    return f"{payload['seconds'] / 60:.0f} min on {payload['machine'].get('cores', '?')} CPU cores{how}"


def table1_growth(t1: dict[str, Any]) -> str:
    """Prompt parameters of MPLMM and MPMM's two levels for M = 3 and M = 5 (MulT)."""
    if "mult" not in t1.get("prompt_growth", {}):
        return "*(table1.json has no prompt-growth count yet: run python -m benchmarks.table1)*"
    growth = t1["prompt_growth"]["mult"]
    methods = [m for m in ("mplmm", "mpmm", "mpmm_attn") if all(m in g for g in growth.values())]
    rows = [[m, str(g["cases"]), *[f"{g[k]:,}" for k in methods], f"{g['mpmm'] // g['cases']:,}"]
            for m, g in growth.items()]
    first, last = list(growth.values())[0], list(growth.values())[-1]
    ratios = ", ".join(f"{k} ×{last[k] / first[k]:.1f}" for k in methods)
    return (_table(["M", "cases (2^M − 1)", *methods, "mpmm tokens per set"], rows)
            + f"\n\nFrom M = {list(growth)[0]} to M = {list(growth)[-1]}: {ratios} (MulT's own type targets widen "
            "with M too, so each per-case set grows as well).")


PAPER_ORDER = (("mplmm", "mmin"), ("mmin", "mpmm"), ("mpmm", "md_zero"), ("md_zero", "zero_filled"),
               ("zero_filled", "lb"))
"""The paper's Table 1 ordering on the average, MPLMM > MMIN > MPMM > MD > MS ≈ LB, as neighbouring pairs."""


def table1_ordering(t1: dict[str, Any]) -> str:
    """The paper's ordering, pair by pair: the six-case average accuracy difference paired by seed
    (same test samples and masks), mean ± SE over seeds, and whether it holds (by more than 2 SE)."""
    from promptkit.evaluation import summarize_over_seeds

    summary = t1["backbones"]["mult"]
    rows = []
    for a, b in PAPER_ORDER:
        if a not in summary or b not in summary:
            continue
        pa, pb = summary[a]["cases"]["avg"]["acc"]["per_seed"], summary[b]["cases"]["avg"]["acc"]["per_seed"]
        d = summarize_over_seeds([x - y for x, y in zip(pa, pb)])
        mean, se = d["mean"], d["se"]
        claim = "≈" if b == "lb" else ">"
        if claim == "≈":
            verdict = "holds (within 2 SE)" if abs(mean) <= 2 * se else "does not hold"
        else:
            verdict = "holds" if mean > 2 * se else "reversed" if mean < -2 * se else "not resolved (within 2 SE)"
        rows.append([f"{a} {claim} {b}", f"{mean:+.2f} ± {se:.2f}", verdict])
    return _table(["the paper's ordering", "avg acc difference, paired by seed (± SE over seeds)", "here"], rows)


def fig4_rates(t1: dict[str, Any]) -> str:
    """Fig. 4 in numbers: each method's ACC (mean ± std over seeds) at a few test missing rates."""
    show = ("0.1", "0.3", "0.5", "0.7", "1.0")
    rows = []
    for m, s in t1["backbones"]["mult"].items():
        r = s.get("rates", {})
        if all(k in r for k in show):
            rows.append([m, *[f"{r[k]['acc']['mean']:.1f} ± {r[k]['acc']['std']:.1f}" for k in show],
                         f"{r['1.0']['mae']['mean']:.3f}", f"{r['1.0']['corr']['mean']:.3f}"])
    if not rows:
        return "*(table1.json has no missing-rate sweep yet)*"
    return _table(["method", *[f"ACC at {float(k):.0%}" for k in show], "MAE at 100%", "Corr at 100%"], rows)


def table3(t3: dict[str, Any]) -> str:
    """The ablation rows (six-case average, mean ± std), paired difference to all-off, paper beside."""
    from promptkit.reference import TABLE3_COLUMNS

    rows = []
    for name, r in t3["rows"].items():
        m = r["metrics"]
        digits = {k: 3 if k in ("mae", "corr") else 1 for k in TABLE3_COLUMNS}
        cells = [f"{m[k]['mean']:.{digits[k]}f} ± {m[k]['std']:.{digits[k]}f}" for k in TABLE3_COLUMNS]
        vs = r["vs_all_off"]
        rows.append([name, *cells, f"{vs['mean']:+.2f} ± {vs['se']:.2f}" if vs else "–"])
        if r["paper_mosi"]:
            rows.append(["*paper, CMU-MOSI*", *[("" if v is None else f"*{v:g}*") for v in r["paper_mosi"].values()], ""])
    verdict = []
    for name, c in t3["checks"].items():
        worst = min(c["comparisons"], key=lambda x: x["mean"])
        verdict.append(f"{name.replace('_', ' ')}: **{'holds' if c['holds'] else 'does not hold'}** "
                       f"(smallest margin {worst['a']} − {worst['b']} = {worst['mean']:+.2f} ± {worst['se']:.2f})")
    seeds = ", ".join(str(x) for x in t3["seeds"])
    return (_table(["prompts", "ACC-7", "ACC", "F1", "MAE", "Corr", "ACC − all off (paired, ± SE over seeds)"], rows)
            + "\n\n" + "; ".join(verdict) + f".\n\nMulT, seeds {seeds} ({t3['setting']} setting, {_timing(t3)}); "
            f"{t3['data']}")


def setting_figure(fig: dict[str, Any]) -> str:
    """Fig. 6 or 7 in numbers: ACC and MAE per value, the optimum and its spread, the paper's."""
    curve, o = fig["curve"], fig["optimum"]
    rows = [[v, f"{c['acc']['mean']:.1f} ± {c['acc']['std']:.1f}", f"{c['f1']['mean']:.1f}", f"{c['mae']['mean']:.3f}",
             f"{c['corr']['mean']:.3f}"] for v, c in curve.items()]
    per_seed = ", ".join(f"{o_}" for o_ in o["best_per_seed"].values())
    seeds = ", ".join(str(x) for x in fig["seeds"])
    paper_key = json.dumps(o["paper_best"])
    versus = ""
    if paper_key in curve and json.dumps(o["best_of_mean"]) != paper_key:
        from ._sweeps import paired_over_seeds

        d = paired_over_seeds(curve[json.dumps(o["best_of_mean"])], curve[paper_key])
        versus = f" ({o['best_of_mean']} − {o['paper_best']}, paired by seed: {d['mean']:+.2f} ± {d['se']:.2f} points)"
    return (_table([fig["key"], "ACC (mean ± std)", "F1", "MAE", "Corr"], rows)
            + f"\n\nBest mean ACC at **{o['best_of_mean']}**; within one SE of it: {o['within_one_se_of_best']}; "
            f"best per seed: {per_seed}; the paper's best on CMU-MOSI: {o['paper_best']}{versus}. MulT, seeds {seeds} "
            f"({fig['setting']} setting, {_timing(fig)}); {fig['data']}")


def sensitivity(sens: dict[str, Any]) -> str:
    """Where the prompts pay: per audio/vision signal level, ceilings, six-case averages and the paired
    differences against the controls (``python -m benchmarks.sensitivity``)."""
    rows = []
    for s in sens["levels"]:
        ceil, acc, pair = s["ceiling"], s["accuracy"], s["paired"]
        rows.append([f"{s['level']:g}", *(f"{ceil[c]:.1f}" if c in ceil else "–" for c in ("{a}", "{v}", "{a,v}", "avg")),
                     *(_pm(acc[m]["avg"]) for m in ("zero_filled", "head_only", "md_zero", "mplmm")),
                     _pm(pair["mplmm_vs_head_only"]["avg"], 2, True), _pm(pair["mplmm_vs_md_zero"]["avg"], 2, True),
                     str(s["runs"])])
    head = ["level", "ceiling {a}", "ceiling {v}", "ceiling {a,v}", "ceiling avg", "zero-filled", "head only", "MD",
            "prompts", "prompts − head only", "prompts − MD", "runs"]
    return (_table(head, rows) + f"\n\nSix-case average binary accuracy (%), mean ± SE over seeds {sens['seeds']}; "
            f"differences paired on identical samples and masks within each run. {_timing(sens)}; {sens['data']}.")


SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "speed": ("speed_cpu.json", speed_targets),
    "speed-steps": ("speed_cpu.json", speed_steps),
    "table1": ("table1.json", table1),
    "table1-growth": ("table1.json", table1_growth),
    "table1-ordering": ("table1.json", table1_ordering),
    "fig4": ("table1.json", fig4_rates),
    "table3": ("table3.json", table3),
    "fig6": ("fig6.json", setting_figure),
    "fig7": ("fig7.json", setting_figure),
    "source-size": ("table2_source2000/table2.json", source_size),
    "contribution": ("contribution.json", contribution),
    "calibration": ("calibration.json", calibration),
    "main-job": ("main_job.json", main_job),
    "table2": ("table2.json", table2),
    "table2-cases": ("table2.json", table2_cases),
    "table2-verdict": ("table2.json", table2_verdict),
    "ablation": ("ablation.json", ablation),
    "sensitivity": ("sensitivity.json", sensitivity),
}
_BLOCK = re.compile(r"(<!-- BEGIN generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END generated:(?P=name) -->)", re.DOTALL)


def render(text: str) -> str:
    """``text`` with every generated block rewritten from its JSON (a block whose JSON is absent says so)."""

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in SECTIONS:
            raise KeyError(f"README block {name!r} has no generator; known: {sorted(SECTIONS)}")
        source, fn = SECTIONS[name]
        payload = _load(source)
        body = fn(payload) if payload is not None else f"*(not measured yet: benchmarks/results/{source} is absent)*"
        note = f"<!-- generated by `python -m benchmarks.readme` from benchmarks/results/{source}; do not edit -->\n"
        return m.group(1) + note + body + "\n" + m.group(4)

    return _BLOCK.sub(sub, text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a document is not what the JSON gives")
    args = p.parse_args(argv)
    stale = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        new = render(text)
        if new == text:
            continue
        stale.append(doc.relative_to(ROOT))
        if not args.check:
            doc.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"{', '.join(map(str, stale))} stale: run python -m benchmarks.readme", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

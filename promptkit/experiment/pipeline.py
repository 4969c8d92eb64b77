"""``promptkit run``: backbone → prompts and controls → the evaluation protocol → paired comparisons.

In the order the work happens:

1. **Backbone.** ``[pretrain] checkpoint`` loads a pre-trained backbone file (what a user of a
   released model does; it must come from the recipe's ``[backbone]``); otherwise the pretrain
   stage trains one on complete data, on the target itself or on the source domain
   (``[data] pretrain_on = "source"``, the paper's design: pre-train on CMU-MOSEI, adapt on
   CMU-MOSI). The backbone is a registered one or the recipe's ``[backbone] factory``; the
   recipe's ``[hooks]`` spec, when it has one, is where every stage attaches.
2. **Adaptation.** Each method of ``[prompt] methods`` (:mod:`promptkit.methods`: the MPLMM
   prompts, the controls, the baselines), each on its own fresh copy of the backbone, with the same
   data, eta, epochs and seed.
3. **Evaluation.** The zero-filled frozen backbone and every trained model on the test split,
   under the same fixed case masks and the same seeded missing-rate sweep.
4. **Comparisons.** Paired per-case differences (mean ± SE over test samples), the per-case
   ridge ceiling and headroom, and the share of the headroom each method recovers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..backbone_files import BACKBONE_FILE, check_backbone_fits, load_backbone
from ..evaluation import (
    check_precision,
    compare_protocols,
    evaluate_protocol,
    report,
    zero_filled_forward,
)
from ..evaluation.ceiling import ridge_ceilings
from ..evaluation.protocol import evaluate_protocol_group
from ..evaluation.shared_trunk import share_trunk
from ..methods import default_methods, get_method, list_methods, method_label, method_short
from ..methods.mplmm import NAME as PROMPTS
from ..methods.zero_filled import NAME as ZERO_FILLED
from ..metrics import metric_kind
from ..modalities import ModalitySet
from ..recipes import Recipe, load_pretrain_data, resolve_recipe_file
from ..train.device import check_compile, resolve_device
from ..train.distributed import barrier, is_main_process
from ..train.pretrain import pretrain, transfer
from ..train.run_dir import code_identity, lock_run_dir


STAGE_ATTRIBUTE = "promptkit_stage"
"""The attribute an exception leaving a stage of :func:`run_pipeline` carries: the stage's name."""


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Run one stage of a run (``"pretrain"``, a method's name, ``"evaluation"``, ``"report"``).

    An exception leaving it is re-raised unchanged (same type, same traceback) carrying the stage:
    ``failed_stage(e) == name`` and, on Python ≥ 3.11, a note ``in stage 'name'`` under its
    traceback. The innermost stage is kept when stages nest.
    """
    try:
        yield
    except Exception as e:
        if failed_stage(e) is None:
            with contextlib.suppress(AttributeError, TypeError):  # an exception type that takes no attributes
                setattr(e, STAGE_ATTRIBUTE, name)
            if hasattr(e, "add_note"):
                e.add_note(f"in stage {name!r} of promptkit run")
        raise


def failed_stage(e: BaseException) -> str | None:
    """The stage of :func:`run_pipeline` that ``e`` left, or None (not raised inside a stage)."""
    name = getattr(e, STAGE_ATTRIBUTE, None)
    return name if isinstance(name, str) else None


def comparisons(methods: list[str]) -> list[tuple[str, str]]:
    """The paired comparisons ``(a, b)`` to report for ``a − b``: each method against zero-fill,
    then the prompts against each control."""
    pairs = [(m, ZERO_FILLED) for m in methods]
    pairs += [(PROMPTS, c) for c in methods if c != PROMPTS and PROMPTS in methods]
    return pairs


def _trainable_share(done: Any, backbone: int) -> dict[str, float]:
    """A method's trainable counts in the keys of ``MissingModalityPrompter.trainable_summary``
    (a prompter's own summary; ``backbone``: the pre-trained backbone's parameter count)."""
    if "trainable" in done.info:
        return done.info["trainable"]
    prompts = int(done.info.get("counts", {}).get("prompts", 0))
    return {"backbone_params": backbone, "prompt_params": prompts, "trainable_params": done.trainable_params,
            "prompt_share": prompts / backbone, "trainable_share": done.trainable_params / backbone}


def comparison_key(a: str, b: str) -> str:
    """``"mplmm_vs_head_only"``: a JSON key that says what minus what."""
    return f"{a}_vs_{b}"


def obtain_backbone(
    recipe: Recipe, data: Any, out_dir: Path, *, data_path: str | Path | None = None, cggm: bool = False, **opts: Any
) -> tuple[Path, dict[str, Any]]:
    """The pre-trained backbone file: ``[pretrain] checkpoint``, or one the pretrain stage trains.

    Returns:
        the file and what to record about it: the backbone's identity (``{"backbone": name}`` or
        ``{"factory": ...}``) with the checkpoint path, or with the pretrain stage's results.
    """
    if recipe.pretrain.checkpoint is not None:
        path = resolve_recipe_file(recipe, recipe.pretrain.checkpoint.format(seed=recipe.data.seed))
        if not path.is_file():
            raise FileNotFoundError(
                f"[pretrain] checkpoint {recipe.pretrain.checkpoint!r} of recipe {recipe.source} does not exist "
                f"(looked for {path}); regenerate it with the command in its recipe's comment"
            )
        backbone = load_backbone(path, recipe=recipe)
        if not recipe.prompt.reinit_projections:  # else the transfer stage fits it to the data
            check_backbone_fits(backbone, data, f"backbone {path}")
        return path, {**recipe.backbone.identity(), "checkpoint": str(path)}
    source = load_pretrain_data(recipe, data, data_path)
    result = pretrain(recipe, source, out_dir / "pretrain", cggm=cggm, **opts)
    return out_dir / "pretrain" / BACKBONE_FILE, {**recipe.backbone.identity(), "data": source.description,
                                                    "test": result.test, "best_epoch": result.best_epoch}


def run_pipeline(
    recipe: Recipe,
    data: Any,
    out_dir: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    cggm: bool = False,
    data_path: str | Path | None = None,
    methods: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run every stage; write ``out_dir/{pretrain,prompt,<control>,<baseline>}/`` and
    ``out_dir/protocol.{json,csv,png}``.

    ``methods`` chooses what trains beside the zero-filled reference: ``"mplmm"`` (the prompts),
    controls (``"head_only"``, ``"full_finetune"``) and baselines of :mod:`promptkit.methods`
    (``"ms_mean"``, ``"md_mean"``, ``"lb"``, ``"lora"``, ...); default: the recipe's
    ``[prompt] methods``. Every model is scored on the same masks.

    Each stage is compiled when its ``compile`` setting asks for it; a backend that cannot run here
    is refused before the first stage starts.

    A resumed run reuses a stage only when the same code would train it (the promptkit version
    and sources, a factory's module: see :func:`~promptkit.train.run_dir.code_identity`);
    otherwise it is refused naming the digest that changed, and ``overwrite`` retrains.

    Returns:
        the summary written to ``protocol.json``: the code identity, stage seconds, trainable
        share, the protocol results per model, paired comparisons, ceilings and headroom.
    """
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    for stage in (recipe.pretrain, recipe.prompt):
        check_compile(stage)  # both stages' backends, before the first one trains
    # a second `promptkit run` into this directory is refused, naming this pid (the main process holds it)
    if methods is None:
        methods = recipe.prompt.methods if recipe.prompt.methods is not None else default_methods()
    chosen = check_methods(methods)
    with lock_run_dir(out_dir) if is_main_process() else contextlib.nullcontext():
        return _run_locked(recipe, data, out_dir, dev, resume=resume, overwrite=overwrite, progress=progress,
                           cggm=cggm, data_path=data_path, methods=chosen)


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` checked: each a registered method (not the reference, which every run scores),
    at least one, none twice.

    Raises:
        UnknownMethodError: a name nothing registered (a ``KeyError``), naming the known ones.
        ValueError: the reference, or a repeated method.
    """
    for m in methods:
        if get_method(m).reference:
            raise ValueError(f"method {m!r} is the reference every run scores; name the methods that train beside it "
                             f"(known: {', '.join(list_methods())})")
    if len(set(methods)) != len(methods) or not methods:
        raise ValueError(f"methods must list at least one method, none twice; got {list(methods)}")
    return list(methods)


def _run_locked(recipe: Recipe, data: Any, out_dir: Path, dev: Any, *, resume: bool, overwrite: bool,
                progress: bool, cggm: bool, data_path: str | Path | None, methods: list[str]) -> dict[str, Any]:
    kind = recipe.data.metric
    acc = metric_kind(kind).accuracy
    test = data.splits["test"]
    if recipe.eval.max_se is not None:
        check_precision(_scored(test, kind), recipe.eval.max_se, f"test split of {data.description}")
    opts = dict(device=dev, resume=resume, overwrite=overwrite, progress=progress)
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    with stage("pretrain"):
        backbone_file, pretrained = obtain_backbone(recipe, data, out_dir, data_path=data_path, cggm=cggm, **opts)
        if recipe.prompt.reinit_projections:  # every method starts from the backbone moved into the data's space
            backbone_file = transfer(recipe, data, backbone_file, out_dir / "transfer", hooks=recipe.hook_spec(), **opts)
            pretrained["transfer"] = str(backbone_file)
        bare = load_backbone(backbone_file, device=dev, recipe=recipe)  # the pre-trained head, untouched
    times["pretrain_s"] = time.perf_counter() - t0

    hooks = recipe.hook_spec()  # None: the backbone's registered spec
    bare_params = sum(p.numel() for p in bare.parameters())
    trained, forwards, best_epochs, shares = {}, {}, {}, {}
    for method in methods:  # each on its own fresh copy of the pre-trained backbone
        t0 = time.perf_counter()
        spec = get_method(method)
        extra = {"cggm": cggm} if spec.cggm else {}
        with stage(method):
            done = spec(recipe, data, backbone_file, out_dir / spec.stage_dir, hooks=hooks, **opts, **extra)
        trained[method] = done
        forwards[method] = done.forward
        best_epochs[method] = done.info.get("best_epoch")
        shares[method] = _trainable_share(done, bare_params)
        times[f"{method}_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    eval_kw = dict(rates=recipe.eval.missing_rates, seed=recipe.eval.seed, batch_size=256, device=dev)
    with stage("evaluation"):
        results = _evaluate_all(bare, trained, forwards, data, hooks, kind, eval_kw)
        paired = {comparison_key(a, b): compare_protocols(results[a], results[b], acc) for a, b in comparisons(methods)}
        per_task = {key: {comparison_key(a, b): {s: d.to_dict() for s, d in compare_protocols(results[a], results[b],
                                                                                              key).items()}
                          for a, b in comparisons(methods)} for key in metric_kind(kind).tasks}
        ceiling = ridge_ceilings(data, kind) if data.task == "regression" else None
        headroom = _headroom(results, ceiling, acc) if ceiling else None
    times["eval_s"] = time.perf_counter() - t0

    summary = {
        "data": data.description,
        "recipe": recipe.source,
        "metric": acc,
        "methods": {m: method_label(m) for m in [ZERO_FILLED, *methods]},
        "backbone": pretrained,
        "code": code_identity(recipe.backbone.factory),  # what code produced these numbers (each stage's run.json too)
        "seconds": times,
        "trainable": shares,
        "best_epoch": best_epochs,
        "paired": {k: {s: d.to_dict() for s, d in v.items()} for k, v in paired.items()},
        "ceiling": ceiling,
        "headroom": headroom,
    }
    if per_task:  # e.g. IEMOCAP: each emotion's binary accuracy, paired per sample
        summary["paired_tasks"] = per_task
    labelled = {method_label(k): r for k, r in results.items()}
    main = is_main_process()  # every process evaluated alike; one writes and prints
    if main:
        with stage("report"):
            report.save_protocol_results(out_dir, results, summary)
            report.plot_rate_sweep(out_dir / "protocol.png", labelled, kind, f"ours on {data.description}")
    barrier()
    if progress and main:
        with stage("report"):
            report.print_table1(labelled, kind, data.description, modalities=data.modalities)
            report.print_paired(
                {f"{method_short(a)} − {method_short(b)}": paired[comparison_key(a, b)]
                 for a, b in comparisons(methods)},
                f"{data.description}; SE over the {len(test)} test samples",
            )
            if headroom:
                _print_headroom(headroom, results, methods)
            report.print_rate_sweep(labelled, kind)
            if PROMPTS in trained:
                trained[PROMPTS].modules["prompter"].print_trainable_parameters()
            spent = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in times.items())
            print(f"time: {spent}; results in {out_dir}/protocol.json, .csv, .png")
    return {**summary, "results": {k: r.to_dict() for k, r in results.items()}}


def _evaluate_all(bare: Any, trained: dict[str, Any], forwards: dict[str, Any], data: Any, hooks: Any, kind: str,
                  eval_kw: dict[str, Any]) -> dict[str, Any]:
    """The protocol for the zero-filled backbone and every method, in that order. Head-only controls
    of the bare backbone are scored on its own trunk pass (:mod:`promptkit.evaluation.shared_trunk`)."""
    test = data.splits["test"]
    base = zero_filled_forward(bare, data.modalities, hooks)
    prompters = {m: t.modules["prompter"] for m, t in trained.items() if "prompter" in t.modules}
    probe = {m: x[:64].to(eval_kw["device"]) for m, x in test.features.items()}  # mixed cases, fixed seed
    mask = ModalitySet(data.modalities).sample_masks(next(iter(probe.values())).shape[0], 0.7,
                                                     torch.Generator().manual_seed(0)).to(eval_kw["device"])
    group = share_trunk(bare, base, ZERO_FILLED, prompters, forwards, probe, mask)
    results = evaluate_protocol_group(group, test, kind, **eval_kw) if group is not None else \
        {ZERO_FILLED: evaluate_protocol(base, test, kind, **eval_kw)}
    for method, forward in forwards.items():
        if method not in results:
            results[method] = evaluate_protocol(forward, test, kind, **eval_kw)
    return {m: results[m] for m in [ZERO_FILLED, *forwards]}


def _scored(dataset: Any, kind: str) -> int:
    """Test samples that count for the binary accuracy (non-zero labels for MOSI/MOSEI)."""
    if metric_kind(kind).nonzero_accuracy:
        return int((dataset.labels != 0).sum())
    return len(dataset)


def _headroom(results: dict[str, Any], ceiling: dict[str, Any], acc: str) -> dict[str, dict[str, float]]:
    """Per case: ridge ceiling, zero-fill, headroom and each method's share recovered (points)."""
    from ..evaluation import case_columns, headroom, share_recovered

    base_cases = results[ZERO_FILLED].cases
    order = [c for c in [*case_columns(results[ZERO_FILLED].modalities), "complete"] if c in ceiling and c in base_cases]
    top = {c: 100 * ceiling[c]["metrics"][acc] for c in order}
    base = {c: 100 * base_cases[c][acc] for c in order}
    room = headroom(top, base)
    shares = {m: share_recovered({c: 100 * r.cases[c][acc] for c in order}, base, top)
              for m, r in results.items() if m != ZERO_FILLED}
    return {c: {"ceiling": top[c], ZERO_FILLED: base[c], "headroom": room[c],
                **{f"share_{m}": s[c] for m, s in shares.items()}} for c in order}


def _print_headroom(headroom: dict[str, dict[str, float]], results: dict[str, Any], methods: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Per-case headroom: ridge ceiling on the available modalities − zero-fill, and the share "
                        "each method recovers (– where there is no headroom)")
    for col in ["case", "ceiling", "zero-filled", "headroom", *(f"share {method_label(m)}" for m in methods)]:
        table.add_column(col, justify="left" if col == "case" else "right")
    for case, row in headroom.items():
        shares = [f"{100 * row[f'share_{m}']:.0f} %" if row[f"share_{m}"] == row[f"share_{m}"] else "-"
                  for m in methods]
        table.add_row(case, f"{row['ceiling']:.1f}", f"{row[ZERO_FILLED]:.1f}", f"{row['headroom']:+.1f}", *shares)
    Console(width=max(Console().width, 120)).print(table)

"""The evaluation protocol for missing modalities: fixed cases and a seeded missing-rate sweep.

Every test sample is evaluated under the complete case and under each incomplete case of the data's
:class:`~promptkit.modalities.ModalitySet` (fixed, not drawn at random - the authors' code drew cases
at random in its test loader), their average, and under missing rates 10..100 % with masks drawn
once per rate from a fixed seed, so two models are always compared on the very same masks.

A *setting* is one mask per test sample, keyed by name: the case names (``"{a}"``, ``"{a,t}"``, ...),
``"complete"`` and ``"rate=0.1"`` etc. (see :func:`rate_key`). :func:`protocol_masks` gives every
setting's masks; :func:`evaluate_protocol` runs a model on each and keeps, besides the metrics, the
per-sample predictions, which :mod:`promptkit.evaluation.paired` compares between two models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data import MSADataset
from ..feature_points import zero_at_extractors, zero_filled_inputs
from ..hookspec import backbone_caller, spec_or_none
from ..metrics import metrics_for
from ..modalities import ModalitySet
from ..outputs import check_finite_output, model_name

__all__ = [
    "AVG",
    "COMPLETE",
    "DEFAULT_RATES",
    "Forward",
    "ProtocolResult",
    "evaluate_masks",
    "evaluate_protocol",
    "evaluate_protocol_group",
    "predict_masks",
    "predict_settings",
    "prompted_forward",
    "protocol_masks",
    "rate_key",
    "zero_filled_forward",
]

Forward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
"""``(features {name: (B, T_m, D_m)}, mask (B, M) bool) -> predictions (B, out_dim)``."""

DEFAULT_RATES: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))
COMPLETE = "complete"
AVG = "avg"
"""Key of the incomplete cases' average in :attr:`ProtocolResult.cases` (metrics only, no masks)."""


def prompted_forward(prompter: nn.Module) -> Forward:
    """A prompter's forward: MMGM and prompts see the mask."""

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return prompter(**features, mask=mask)

    forward.model = prompter  # type: ignore[attr-defined]  (named in an error message)
    return forward


def zero_filled_forward(backbone: nn.Module, modalities: Sequence[str], hooks: Any = None) -> Forward:
    """The bare backbone with every missing input replaced by zeros (the paper's baseline).

    Args:
        backbone: called through :func:`promptkit.hookspec.backbone_caller` (the spec's forward
            keywords and ``output``).
        modalities: the mask's column order.
        hooks: a HookSpec (or dict) for a backbone without a registered one; None: the registered
            spec, else modality names as keywords.
    """
    call = backbone_caller(backbone, hooks)
    spec = spec_or_none(backbone, hooks)  # a module entry of 'features' is zeroed at its extractor's output

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        with zero_at_extractors(backbone, spec, mask):
            return call(zero_filled_inputs(spec, features, mask, modalities))

    forward.model = backbone  # type: ignore[attr-defined]  (named in an error message)
    return forward


def rate_key(rate: float) -> str:
    """Setting key of a missing rate: ``rate_key(0.1) == "rate=0.1"``, ``rate_key(1) == "rate=1.0"``."""
    return f"rate={round(float(rate), 6)!r}"


def _rate_generator(seed: int, rate: float) -> torch.Generator:
    """The generator of one rate's masks: a function of ``(seed, rate)`` only, never of the model."""
    return torch.Generator().manual_seed(int(seed) * 1000 + int(round(float(rate) * 100)))


def protocol_masks(
    modalities: ModalitySet | Sequence[str], n: int, rates: Sequence[float] = DEFAULT_RATES, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Every setting's availability masks for ``n`` samples.

    Keys, in this order: each incomplete case's name by case id (``"{t}"``, ``"{a}"``, ...), then
    ``"complete"``, then ``rate_key(r)`` for each rate. Case names are the modality set's unique
    ones (:attr:`ModalitySet.case_names`; ``ModalitySet.case_id(name)`` maps back to the stable id),
    so modalities sharing an initial (pose/physio → ``"{po}"``, ``"{ph}"``) never collide. A case's
    mask is that case for every sample; a rate's mask is :meth:`ModalitySet.sample_masks`
    ``(n, rate)`` from a generator seeded by ``(seed, rate)`` alone, so every model evaluated with
    the same seed sees the same masks.

    Returns:
        setting key → mask ``(n, M)`` bool.
    """
    ms = modalities if isinstance(modalities, ModalitySet) else ModalitySet(modalities)
    names = list(ms.case_names.values())
    clash = {k for k in names if names.count(k) > 1 or k == COMPLETE or k.startswith("rate=")}
    if clash:  # ModalitySet makes names unique; a clash here would silently overwrite results
        raise ValueError(f"case names {sorted(clash)} of modalities {list(ms.names)} are not unique setting keys")
    masks = {c.name: ms.case_mask(c, n) for c in ms.incomplete_cases}
    masks[COMPLETE] = ms.complete_mask(n)
    for rate in rates:
        key = rate_key(rate)
        if key in masks:
            raise ValueError(f"missing rate {rate} is listed twice in rates={list(rates)}")
        masks[key] = ms.sample_masks(n, float(rate), _rate_generator(seed, rate))
    return masks


@dataclass
class ProtocolResult:
    """Metrics per case and per missing rate, plus the per-sample predictions behind them.

    Attributes:
        cases: case name (``"{a,t}"``, ``"complete"``, ``"avg"``) → metric → value.
        rates: missing rate → metric → value.
        kind: the metric kind (:func:`promptkit.metrics.metrics_for`).
        modalities: the data's modality order (the masks' columns).
        predictions: setting key (see :func:`protocol_masks`) → predictions ``(N,)`` or ``(N, C...)``,
            float32 on the CPU. Not written by :meth:`to_dict`; empty after :meth:`from_dict`.
        labels: the test labels ``(N,)`` or ``(N, K)``; ``None`` after :meth:`from_dict`.
    """

    cases: dict[str, dict[str, float]]
    rates: dict[float, dict[str, float]] = field(default_factory=dict)
    kind: str = ""
    modalities: tuple[str, ...] = ()
    predictions: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    labels: torch.Tensor | None = field(default=None, repr=False)

    @property
    def case_names(self) -> list[str]:
        """The incomplete cases evaluated, in evaluation order (no ``"avg"``, no ``"complete"``)."""
        return [c for c in self.cases if c not in (AVG, COMPLETE)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metrics (predictions and labels are left out to keep files small)."""
        out: dict[str, Any] = {"cases": self.cases, "rates": {str(r): m for r, m in self.rates.items()}}
        if self.kind:
            out["kind"] = self.kind
        if self.modalities:
            out["modalities"] = list(self.modalities)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProtocolResult:
        """Read :meth:`to_dict`'s output back (e.g. from ``protocol.json``); no predictions."""
        if "cases" not in d:
            raise KeyError(f"a protocol result needs a 'cases' entry, got keys {sorted(d)}")
        return cls(
            cases={c: {k: float(v) for k, v in m.items()} for c, m in d["cases"].items()},
            rates={float(r): {k: float(v) for k, v in m.items()} for r, m in d.get("rates", {}).items()},
            kind=str(d.get("kind", "")),
            modalities=tuple(d.get("modalities", ())),
        )


def _forward_name(forward: Forward) -> str:
    """The model a forward calls, for a message: its ``model`` attribute (set by
    :func:`prompted_forward` and :func:`zero_filled_forward`), else the first module it closes over
    (two closures deep), else the forward's own name."""
    def find(fn: Any, depth: int) -> nn.Module | None:
        model = getattr(fn, "model", None) or getattr(fn, "__self__", None)
        if isinstance(model, nn.Module):
            return model
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, nn.Module):
                return value
            if depth and callable(value):
                found = find(value, depth - 1)
                if found is not None:
                    return found
        return None

    model = find(forward, 2)
    return model_name(model) if model is not None else \
        f"the forward {getattr(forward, '__qualname__', type(forward).__name__)}"


@torch.no_grad()
def predict_masks(
    forward: Forward,
    dataset: MSADataset,
    masks: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    setting: str | None = None,
) -> torch.Tensor:
    """Predictions of ``forward`` on ``dataset`` with one mask per sample.

    Args:
        masks: ``(N, M)`` bool, ``N = len(dataset)``.
        setting: the masks' setting key (``"{a,t}"``, ``"rate=0.3"``), for the error message.

    Returns:
        ``(N,)`` for a one-output model, else ``(N, out_dim)``; float32 on the CPU.

    Raises:
        NonFiniteOutputError: a batch's predictions hold NaN/inf (the message names the model,
            the setting and the samples).
    """
    if masks.shape[0] != len(dataset):
        raise ValueError(f"need one mask per sample: {masks.shape[0]} masks for {len(dataset)} samples")
    return _predict(forward, dataset.features, masks, batch_size, device, setting)


def _predict(
    forward: Forward,
    features: Mapping[str, torch.Tensor],
    masks: torch.Tensor,
    batch_size: int,
    device: str | torch.device,
    setting: str | None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`predict_masks` on the samples ``rows`` of ``features`` (None: all, as views)."""
    n = masks.shape[0]
    out: dict[Any, list[torch.Tensor]] = {}
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        picked = None if rows is None else rows[sl]
        feats = {m: (x[sl] if picked is None else x[picked]).to(device) for m, x in features.items()}
        preds = forward(feats, masks[sl].to(device))
        for key, p in (preds.items() if isinstance(preds, dict) else [(None, preds)]):  # a group: several models
            if isinstance(p, torch.Tensor) and not bool(torch.isfinite(p).all()):
                samples = list(range(start, min(start + batch_size, n))) if picked is None else picked.tolist()
                where = f"evaluation{f' of setting {setting}' if setting else ''}, samples {samples[0]}..{samples[-1]}"
                check_finite_output(p, _forward_name(forward) if key is None else str(key), where, samples)
            p = p.float().cpu()
            out.setdefault(key, []).append(p.squeeze(-1) if p.dim() > 1 and p.shape[-1] == 1 else p)
    cat = {key: torch.cat(parts) for key, parts in out.items()}
    return cat[None] if list(cat) == [None] else cat


@torch.no_grad()
def predict_settings(
    forward: Forward,
    dataset: MSADataset,
    masks: Mapping[str, torch.Tensor],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Predictions of ``forward`` under every setting of ``masks``, each distinct (sample, case) once.

    The settings of :func:`protocol_masks` overlap: a missing-rate setting gives every sample one
    of the cases that the fixed-case settings already evaluate for every sample. So the forward
    runs once per (sample, case) pair that any setting needs, case by case over the samples in
    order (the batches of a fixed-case setting are exactly those :func:`predict_masks` runs), and
    each setting's predictions are gathered from those. This takes a forward that is a function of
    each sample alone (a model in eval mode), which every evaluated model is.

    Args:
        masks: setting key → ``(N, M)`` bool, ``N = len(dataset)``; no all-missing rows.

    Returns:
        setting key → predictions as :func:`predict_masks` gives them; for a ``forward`` that returns
        ``{model: predictions}`` (a group), model → setting key → predictions.
    """
    if not masks:
        return {}
    ms = ModalitySet(dataset.modalities)
    n = len(dataset)
    ids = {}
    for key, m in masks.items():
        if m.shape != (n, len(ms)):
            raise ValueError(f"setting {key}: need one mask of {len(ms)} columns per sample, got {tuple(m.shape)} "
                             f"for {n} samples")
        ids[key] = ms.case_ids_from_masks(m)
    needed = torch.zeros(len(ms.cases), n, dtype=torch.bool)
    for case_ids in ids.values():
        needed[case_ids, torch.arange(n)] = True
    tables: dict[Any, torch.Tensor] = {}  # model (None: the one) -> (cases, N, ...) predictions where needed
    for case in ms.cases:
        rows = needed[case.id].nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        preds = _predict(forward, dataset.features, ms.case_mask(case, rows.numel()), batch_size, device,
                         case.name, rows=None if rows.numel() == n else rows)
        for model, p in (preds.items() if isinstance(preds, dict) else [(None, preds)]):
            if model not in tables:
                tables[model] = torch.zeros(len(ms.cases), n, *p.shape[1:], dtype=p.dtype)
            tables[model][case.id, rows] = p
    gathered = {model: {key: t[case_ids, torch.arange(n)] for key, case_ids in ids.items()} for model, t in tables.items()}
    return gathered[None] if list(gathered) == [None] else gathered


def _metrics(preds: torch.Tensor, labels: torch.Tensor, metric_kind: str) -> dict[str, float]:
    metric = metrics_for(metric_kind)
    metric.update(preds, labels)
    return {k: float(v) for k, v in metric.compute().items()}


def evaluate_masks(
    forward: Forward,
    dataset: MSADataset,
    masks: torch.Tensor,
    metric_kind: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Metrics of ``forward`` on ``dataset`` with one availability mask per sample ``(N, M)``."""
    return _metrics(predict_masks(forward, dataset, masks, batch_size, device), dataset.labels, metric_kind)


def evaluate_protocol(
    forward: Forward,
    dataset: MSADataset,
    metric_kind: str,
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> ProtocolResult:
    """Every fixed case, their average, and the missing-rate sweep on :func:`protocol_masks`' masks.

    ``cases["avg"]`` is the plain mean of the incomplete cases' metrics (each case weighs the same).
    """
    masks = protocol_masks(dataset.modalities, len(dataset), rates, seed)
    return _result(predict_settings(forward, dataset, masks, batch_size, device), dataset, metric_kind, rates)


def evaluate_protocol_group(
    forward: Callable[[dict[str, torch.Tensor], torch.Tensor], dict[str, torch.Tensor]],
    dataset: MSADataset,
    metric_kind: str,
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, ProtocolResult]:
    """:func:`evaluate_protocol` of several models whose predictions one ``forward`` returns at once
    (``{model: (B, out_dim)}``; e.g. heads on one frozen trunk, :mod:`.shared_trunk`)."""
    masks = protocol_masks(dataset.modalities, len(dataset), rates, seed)
    grouped = predict_settings(forward, dataset, masks, batch_size, device)
    return {model: _result(predictions, dataset, metric_kind, rates) for model, predictions in grouped.items()}


def _result(predictions: dict[str, torch.Tensor], dataset: MSADataset, metric_kind: str,
            rates: Sequence[float]) -> ProtocolResult:
    metrics = {key: _metrics(p, dataset.labels, metric_kind) for key, p in predictions.items()}
    case_names = [c.name for c in ModalitySet(dataset.modalities).incomplete_cases]
    cases = {name: metrics[name] for name in case_names}
    keys = next(iter(cases.values())).keys() if cases else []
    cases[AVG] = {k: sum(c[k] for c in cases.values()) / len(cases) for k in keys}
    cases[COMPLETE] = metrics[COMPLETE]
    return ProtocolResult(
        cases=cases,
        rates={float(r): metrics[rate_key(r)] for r in rates},
        kind=metric_kind,
        modalities=tuple(dataset.modalities),
        predictions=predictions,
        labels=dataset.labels.clone(),
    )

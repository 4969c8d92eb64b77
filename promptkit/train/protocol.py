"""The evaluation protocol for missing modalities: fixed cases and a seeded missing-rate sweep.

Every test sample is evaluated under the complete case and under each incomplete case (fixed, not
drawn at random - the authors' code drew cases at random in its test loader), their average, and
under missing rates 10..100 % with masks drawn once per rate from a fixed seed, so two models are
always compared on the very same masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..data import MSADataset
from ..metrics import metrics_for
from ..modalities import ModalitySet

Forward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
"""``(features, mask (B, M)) -> predictions (B, out_dim)``."""

DEFAULT_RATES: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))


def prompted_forward(prompter: nn.Module) -> Forward:
    """A prompter's forward: MMGM and prompts see the mask."""
    return lambda features, mask: prompter(**features, mask=mask)


def zero_filled_forward(backbone: nn.Module, modalities: Sequence[str]) -> Forward:
    """The bare backbone with every missing input replaced by zeros (the paper's baseline)."""

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        filled = {m: features[m] * mask[:, i, None, None].to(features[m].dtype) for i, m in enumerate(modalities)}
        return backbone(**filled)

    return forward


@dataclass
class ProtocolResult:
    """Metrics per case name (``"{a,t}"``, ``"complete"``, ``"avg"``) and per missing rate."""

    cases: dict[str, dict[str, float]]
    rates: dict[float, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"cases": self.cases, "rates": {str(r): m for r, m in self.rates.items()}}


@torch.no_grad()
def evaluate_masks(
    forward: Forward,
    dataset: MSADataset,
    masks: torch.Tensor,
    metric_kind: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Metrics of ``forward`` on ``dataset`` with one availability mask per sample ``(N, M)``."""
    if masks.shape[0] != len(dataset):
        raise ValueError(f"need one mask per sample: {masks.shape[0]} masks for {len(dataset)} samples")
    metric = metrics_for(metric_kind)
    for start in range(0, len(dataset), batch_size):
        sl = slice(start, start + batch_size)
        feats = {m: x[sl].to(device) for m, x in dataset.features.items()}
        preds = forward(feats, masks[sl].to(device)).float().cpu()
        metric.update(preds.squeeze(-1) if preds.shape[-1] == 1 else preds, dataset.labels[sl])
    return {k: float(v) for k, v in metric.compute().items()}


def evaluate_protocol(
    forward: Forward,
    dataset: MSADataset,
    metric_kind: str,
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> ProtocolResult:
    """Every fixed case, their average, and the missing-rate sweep (see the module docstring)."""
    modalities = ModalitySet(dataset.modalities)
    n = len(dataset)
    cases: dict[str, dict[str, float]] = {}
    for case in modalities.incomplete_cases:
        cases[case.name] = evaluate_masks(forward, dataset, modalities.case_mask(case, n), metric_kind, batch_size, device)
    keys = next(iter(cases.values())).keys() if cases else []
    cases["avg"] = {k: sum(c[k] for c in cases.values()) / len(cases) for k in keys}
    cases["complete"] = evaluate_masks(forward, dataset, modalities.complete_mask(n), metric_kind, batch_size, device)
    sweep = {}
    for rate in rates:
        g = torch.Generator().manual_seed(seed * 1000 + int(round(rate * 100)))
        sweep[float(rate)] = evaluate_masks(
            forward, dataset, modalities.sample_masks(n, rate, g), metric_kind, batch_size, device
        )
    return ProtocolResult(cases=cases, rates=sweep)

"""MCTN, the Multimodal Cyclic Translation Network (Pham et al., AAAI 2019, "Found in Translation").

MCTN learns a joint representation by *translating* a source modality into the others. Only the
source is read at test time, which is why it is robust to missing non-source modalities.

Data path for modalities ``(m_0, ..., m_{M-1})``, source ``S`` (default ``"text"``) and the
translation chain ``(T_1, ..., T_K)`` (default: the other modalities in order, ``K = M - 1``;
text → audio → vision for MOSI's order):

1. ``inputs.<m>``: a parameter-free ``nn.Identity`` per modality that every input passes through
   once per forward (after the mask's zeroing): the hook points of missing-signal prompts.
2. ``embed``: ``Linear(D_S → H)`` on the source ``(B, T_S, D_S) → (B, T_S, H)``, then dropout.
3. ``encoders.<k>``, k = 0..K-1: the hierarchical encoders, each an RNN ``(B, T_S, H) → (B, T_S, H)``;
   stage 0 reads the embedded source, stage k the output sequence of stage k-1. The last step of
   stage k is its representation ``E_k (B, H)``; ``E_{K-1}`` is the *joint representation*.
4. ``head``: ``Linear(H, H') → ReLU → dropout → Linear(H', out_dim)`` on the joint representation.

Training only (``model.training``), the translation losses, left weighted in :meth:`auxiliary_loss`:

- ``decoders.<T_k>``: decodes ``E_{k-1}`` into the target ``T_k``'s sequence ``(B, T_{T_k}, D_{T_k})``;
  ``loss_parts["translate_<T_k>"]`` is its MSE to the target's features.
- the cycle of the first stage: ``cycle.embed`` + ``cycle.encoder`` re-encode the translation
  ``X̂_{T_1}`` and ``cycle.decoder`` decodes it back into the source; ``loss_parts["cycle_<S>"]`` is
  its MSE to the source's features. As in the paper's hierarchical MCTN, the later stages have no
  cycle.

``auxiliary_loss() = translation_weight · Σ_k translate_k + cycle_weight · cycle``.

Decoders are **non-autoregressive** (no teacher forcing): an RNN unrolled over the target's
length whose every input step, and initial hidden state, is the encoder's representation
``E (B, H)``, followed by ``Linear(H → D_target)``. A translation therefore depends on the source
alone, never on the target it is scored against.

Missing modalities. ``forward(mask=...)`` (``(B, M)`` bool, True = available, columns in
``modalities`` order) zeroes every missing input first. Each translation loss is averaged per
sample over steps and features and then over the samples whose *target* of that loss is available
(the target modality for a translation, the source for the cycle); a sample whose target is
missing contributes nothing (and a batch without any such sample gives a zero loss). If the source
itself is missing, MCTN has nothing to translate from: the prediction is that of the zero input
(the paper assumes the source is always present). A missing non-source modality has no effect on
the prediction at all.

Hook spec: signal prompts on ``inputs.<m>`` (BTD, width ``D_m``; a non-source modality's signal
prompt has no path to the prediction, because MCTN never reads that modality at test time), type
prompts on every ``encoders.<k>`` (BTD, width H), ``head`` trainable; the source's encoder for
CGGM is ``embed`` and the encoders (non-source modalities have none).

Departures from the paper: the back-translation of the cycle has its own encoder and decoder
(the paper's notation reuses one encoder; here the input widths differ, and a separate
re-encoder keeps every hook point to one call per forward); the decoders are non-autoregressive
(see above); the prediction head is an MLP on the joint representation (the paper runs a further
RNN over the encoder's states); padding steps are part of every sequence and of the MSEs.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from promptkit.hookspec import HookSpec, ModalityEncoder, SignalTarget, TypeTarget, register_hook_spec
from promptkit.modalities import check_mask

from ._registry import register_backbone
from .base import MSABackbone, Task
from .encoders import check_batch

__all__ = ["MCTN", "RepeatDecoder", "SequenceRNN", "masked_mse", "mctn"]

DEFAULT_FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}
Cell = Literal["gru", "lstm"]
_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _check_cell(cell: str) -> str:
    if cell not in _CELLS:
        raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
    return cell


class SequenceRNN(nn.Module):
    """A batch-first unidirectional GRU/LSTM returning every step: ``(B, T, D_in) → (B, T, H)``.

    Args:
        in_dim: input feature size D_in.
        hidden_size: H.
        cell: ``"gru"`` or ``"lstm"``.
        num_layers: stacked layers.
        dropout: between stacked layers (ignored with one layer).
    """

    def __init__(self, in_dim: int, hidden_size: int, cell: Cell = "gru", num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if min(in_dim, hidden_size, num_layers) < 1:
            raise ValueError(f"SequenceRNN needs positive sizes, got in_dim={in_dim}, hidden_size={hidden_size}, "
                             f"num_layers={num_layers}")
        self.in_dim, self.hidden_size = int(in_dim), int(hidden_size)
        self.rnn = _CELLS[_check_cell(cell)](in_dim, hidden_size, num_layers=num_layers, batch_first=True,
                                             dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, D_in)`` → ``(B, T, H)``."""
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"SequenceRNN expects (B, T, {self.in_dim}), got {tuple(x.shape)}")
        return self.rnn(x)[0]


class RepeatDecoder(nn.Module):
    """A non-autoregressive sequence decoder: ``context (B, H), length T → (B, T, D_out)``.

    An RNN unrolled for ``T`` steps whose every input is ``context`` and whose initial hidden state
    (every layer; an LSTM's cell state starts at zero) is ``context``, then ``Linear(H → D_out)``.

    Args:
        hidden_size: H, the context's size.
        out_dim: D_out, the decoded features' size.
        cell: ``"gru"`` or ``"lstm"``.
        num_layers: stacked layers.
    """

    def __init__(self, hidden_size: int, out_dim: int, cell: Cell = "gru", num_layers: int = 1) -> None:
        super().__init__()
        self.cell, self.hidden_size, self.num_layers = _check_cell(cell), int(hidden_size), int(num_layers)
        self.rnn = _CELLS[cell](hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, out_dim)

    def forward(self, context: torch.Tensor, length: int) -> torch.Tensor:
        """``context: (B, H)``, ``length`` T ≥ 1 → ``(B, T, D_out)``."""
        if context.dim() != 2 or context.shape[-1] != self.hidden_size:
            raise ValueError(f"RepeatDecoder expects a context (B, {self.hidden_size}), got {tuple(context.shape)}")
        if length < 1:
            raise ValueError(f"RepeatDecoder needs a length >= 1, got {length}")
        steps = context.unsqueeze(1).expand(-1, length, -1).contiguous()  # (B, T, H)
        h0 = context.unsqueeze(0).expand(self.num_layers, -1, -1).contiguous()  # (layers, B, H)
        state = (h0, torch.zeros_like(h0)) if self.cell == "lstm" else h0
        return self.out(self.rnn(steps, state)[0])


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """MSE per sample over steps and features, averaged over the samples with ``weight`` 1.

    Args:
        pred, target: ``(B, T, D)``.
        weight: ``(B,)``, 1 where the sample's target is available, 0 where it is missing.

    Returns:
        a scalar; 0 (still attached to ``pred``'s graph) when no sample counts.
    """
    if pred.shape != target.shape:
        raise ValueError(f"translation of shape {tuple(pred.shape)} scored against a target {tuple(target.shape)}")
    per_sample = (pred - target).pow(2).flatten(1).mean(1)  # (B,)
    w = weight.to(per_sample.dtype)
    return (per_sample * w).sum() / w.sum().clamp_min(1.0)


class MCTN(MSABackbone):
    """Hierarchical MCTN: the source translated along a chain of modalities; the prediction from
    the source's joint representation alone (see the module docstring for the data path).

    Args:
        feature_dims: feature size per modality, in order (default text 300, audio 5, vision 20);
            at least two modalities.
        out_dim: 1 for regression, else the number of logits.
        task: ``"regression"`` or ``"classification"``.
        source: the modality translated from, the only one the prediction reads (default ``"text"``).
        chain: the modalities translated into, in stage order (default: every other modality in
            ``feature_dims`` order); each modality at most once, never the source.
        hidden_size: H, the width of the embedding, every encoder and decoder.
        cell: ``"gru"`` (default) or ``"lstm"``.
        num_layers: layers of every encoder and decoder RNN.
        dropout: on the embedded source, between stacked encoder layers, and inside the head.
        translation_weight: weight of the translation losses in :meth:`auxiliary_loss`.
        cycle_weight: weight of the cycle (back-translation) loss.
        head_hidden: the head's hidden size H' (default H).
    """

    def __init__(
        self,
        feature_dims: dict[str, int] | None = None,
        out_dim: int = 1,
        task: Task = "regression",
        source: str = "text",
        chain: Sequence[str] | None = None,
        hidden_size: int = 32,
        cell: Cell = "gru",
        num_layers: int = 1,
        dropout: float = 0.1,
        translation_weight: float = 1.0,
        cycle_weight: float = 1.0,
        head_hidden: int | None = None,
    ) -> None:
        super().__init__(dict(DEFAULT_FEATURE_DIMS) if feature_dims is None else feature_dims, out_dim, task)
        mods = self.modalities
        if len(mods) < 2:
            raise ValueError(f"MCTN needs at least 2 modalities (a source and a target), got {list(mods)}")
        for name in mods:
            if not name.isidentifier():
                raise ValueError(f"modality name {name!r} must be a Python identifier")
        if source not in mods:
            raise KeyError(f"source modality {source!r} is not among the modalities {list(mods)}")
        chain = [m for m in mods if m != source] if chain is None else [str(m) for m in chain]
        if not chain:
            raise ValueError("chain must name at least one modality to translate into")
        unknown = [m for m in chain if m not in mods]
        if unknown:
            raise KeyError(f"chain names unknown modality {unknown}; known: {list(mods)}")
        if source in chain or len(set(chain)) != len(chain):
            raise ValueError(f"chain {chain} must name distinct modalities other than the source {source!r}")
        if min(hidden_size, num_layers) < 1 or (head_hidden is not None and head_hidden < 1):
            raise ValueError(f"sizes must be positive, got hidden_size={hidden_size}, num_layers={num_layers}, "
                             f"head_hidden={head_hidden}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout must lie in [0, 1], got {dropout}")
        if min(float(translation_weight), float(cycle_weight)) < 0:
            raise ValueError(f"loss weights must be >= 0, got translation_weight={translation_weight}, "
                             f"cycle_weight={cycle_weight}")
        self.source, self.chain = str(source), tuple(chain)
        self.hidden_size, self.cell, self.num_layers = int(hidden_size), _check_cell(cell), int(num_layers)
        self.dropout = float(dropout)
        self.translation_weight, self.cycle_weight = float(translation_weight), float(cycle_weight)
        self.head_hidden = None if head_hidden is None else int(head_hidden)
        self.loss_parts: dict[str, torch.Tensor] = {}

        h, dims, first = self.hidden_size, self.feature_dims, self.chain[0]
        self.inputs = nn.ModuleDict({m: nn.Identity() for m in mods})
        self.embed = nn.Linear(dims[self.source], h)
        self.encoders = nn.ModuleList(
            [SequenceRNN(h, h, cell, num_layers, self.dropout) for _ in self.chain]
        )
        self.decoders = nn.ModuleDict({t: RepeatDecoder(h, dims[t], cell, num_layers) for t in self.chain})
        self.cycle = nn.ModuleDict({
            "embed": nn.Linear(dims[first], h),
            "encoder": SequenceRNN(h, h, cell, num_layers, self.dropout),
            "decoder": RepeatDecoder(h, dims[self.source], cell, num_layers),
        })
        hh = self.head_hidden or h
        self.head = nn.Sequential(nn.Linear(h, hh), nn.ReLU(), nn.Dropout(self.dropout), nn.Linear(hh, self.out_dim))

    def forward(self, mask: torch.Tensor | None = None, **features: torch.Tensor) -> torch.Tensor:
        """One ``(B, T_m, D_m)`` tensor per modality (``text=..., audio=..., vision=...``), and
        optionally ``mask (B, M)`` bool (True = available) → ``(B, out_dim)``.

        Missing inputs are zeroed; the prediction reads the source only. In training mode the
        translation and cycle losses are left in :meth:`auxiliary_loss` / ``loss_parts``.
        """
        self.check_features(features)
        batch = check_batch(features)
        if mask is not None:
            check_mask(mask, len(self.modalities), batch)
            mask = mask.to(next(iter(features.values())).device)
            features = {m: features[m] * mask[:, i, None, None].to(features[m].dtype)
                        for i, m in enumerate(self.modalities)}
        x = {m: self.inputs[m](features[m]) for m in self.modalities}  # (B, T_m, D_m) each

        h = F.dropout(self.embed(x[self.source]), self.dropout, self.training)  # (B, T_S, H)
        stages = []  # E_k (B, H) of each stage
        for encoder in self.encoders:
            h = encoder(h)  # (B, T_S, H)
            stages.append(h[:, -1])
        pred = self.head(stages[-1])

        if self.training:
            self.loss_parts = self._translation_losses(x, stages, mask)
            parts = self.loss_parts
            translate = sum(parts[f"translate_{t}"] for t in self.chain)
            self._aux_loss = self.translation_weight * translate + self.cycle_weight * parts[f"cycle_{self.source}"]
        else:
            self.loss_parts, self._aux_loss = {}, None
        return pred

    def _translation_losses(self, x: dict[str, torch.Tensor], stages: list[torch.Tensor],
                            mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Unweighted ``{"translate_<T_k>": ..., "cycle_<S>": ...}``, each masked per sample by the
        availability of the modality it is scored against."""
        batch = stages[0].shape[0]
        column = {m: i for i, m in enumerate(self.modalities)}

        def available(m: str) -> torch.Tensor:
            if mask is None:
                return stages[0].new_ones(batch)
            return mask[:, column[m]].to(stages[0].dtype)

        parts: dict[str, torch.Tensor] = {}
        translated = None
        for k, target in enumerate(self.chain):
            x_hat = self.decoders[target](stages[k], x[target].shape[1])  # (B, T_target, D_target)
            parts[f"translate_{target}"] = masked_mse(x_hat, x[target], available(target))
            if k == 0:
                translated = x_hat
        back = self.cycle["encoder"](self.cycle["embed"](translated))  # (B, T_{T_1}, H)
        source_hat = self.cycle["decoder"](back[:, -1], x[self.source].shape[1])  # (B, T_S, D_S)
        parts[f"cycle_{self.source}"] = masked_mse(source_hat, x[self.source], available(self.source))
        return parts

    def config(self) -> dict:
        return dict(
            feature_dims=dict(self.feature_dims),
            out_dim=self.out_dim,
            task=self.task,
            source=self.source,
            chain=list(self.chain),
            hidden_size=self.hidden_size,
            cell=self.cell,
            num_layers=self.num_layers,
            dropout=self.dropout,
            translation_weight=self.translation_weight,
            cycle_weight=self.cycle_weight,
            head_hidden=self.head_hidden,
        )


@register_backbone
def mctn(**cfg) -> MCTN:
    """MCTN with CPU-small defaults: MOSI-shaped ``feature_dims``, source ``"text"``, the chain the
    other modalities in order, GRUs of width 32; any :class:`MCTN` keyword is accepted."""
    return MCTN(**cfg)


@register_hook_spec(MCTN)
def _mctn_hook_spec(model: MCTN) -> HookSpec:
    """Signal prompts on every modality's input ``inputs.<m>`` (BTD, width D_m), type prompts on
    every stage encoder's input ``encoders.<k>`` (BTD, width H), the head trainable; the source's
    encoder for CGGM is its embedding and the encoders."""
    h, last = model.hidden_size, len(model.encoders) - 1
    return HookSpec(
        features={m: m for m in model.modalities},
        signal={
            m: SignalTarget(path=f"inputs.{m}", layout="BTD", width=model.feature_dims[m]) for m in model.modalities
        },
        type=[TypeTarget(path=f"encoders.{k}", layout="BTD", arg=0, width=h) for k in range(last + 1)],
        trainable=["head"],
        encoders={model.source: ModalityEncoder(output=f"encoders.{last}", layout="BTD",
                                                params=["embed", "encoders"], width=h)},
    )

"""MISA: modality-invariant and -specific representations (Hazarika et al., ACM MM 2020).

Data path for modalities ``(m_1, …, m_M)`` (by default text, audio, vision):

1. ``extract[m]``: MISA's utterance-level extractor, two bidirectional LSTMs with a LayerNorm
   between them; the final states of both layers, both directions, give ``(B, 4·H_m)``.
2. ``project[m]``: Linear → ReLU → LayerNorm to the shared size ``(B, d)``.
3. ``private[m]`` (one per modality) and ``shared`` (one for all): Linear → Sigmoid, ``(B, d)``.
4. ``fusion``: a one-layer transformer over the ``2M`` vectors stacked as a sequence
   ``[private_1..M, shared_1..M]``, ``(B, 2M, d) → (B, 2M, d)``.
5. ``head``: the flattened ``(B, 2M·d)`` → Linear(2M·d, M·d) → dropout → ReLU → Linear → ``(B, out_dim)``.

Training losses (MISA's CMD setting, its released defaults, used for MOSI): ``diff_weight · L_diff
+ sim_weight · L_sim + recon_weight · L_recon`` with

- ``L_sim``: central moment discrepancy (5 moments) between the shared vectors of every modality
  pair, averaged over pairs;
- ``L_diff``: soft orthogonality between each modality's private and shared vectors and between
  every pair of private vectors, summed;
- ``L_recon``: MSE between ``recon[m](private_m + shared_m)`` and the projected vector, averaged.

Text: ``text_encoder="features"`` (default) reads a pre-extracted feature sequence with the same
LSTM extractor as audio and vision (MISA's GloVe path); ``text_encoder="bert"`` is MISA's BERT
path: token ids ``(B, 3, T)`` (MMSA's ``text_bert``) → ``text_encoder`` (a ``BertModel``, small and
random-initialised unless ``pretrained_path`` names local weights; see :mod:`.text_encoders`) →
the mean of its states over the real tokens → ``project["text"]``; its hook spec puts MMGM at the
BERT's output.

Departures from the released code: sequences are read at full length (no packing by true lengths), LSTM sizes are keywords
(MISA sets each to its input size), and the fusion transformer's feed-forward width is a keyword
(MISA leaves PyTorch's 2048), and ``L_diff`` keeps the row norms in the graph (see
:func:`diff_loss`). The adversarial discriminators, off in the CMD setting
(``sp_weight = 0``), are not built. Any number of modalities works.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from promptkit.hookspec import HookSpec, ModalityEncoder, SignalTarget, TypeTarget, register_hook_spec

from ._registry import register_backbone
from .base import MSABackbone, Task
from .encoders import SequenceLSTM, check_batch, final_state
from .text_encoders import BERT_KEYS, BertTextEncoder, build_bert, config_record, masked_mean

__all__ = ["MISA", "MISAExtractor", "cmd", "diff_loss", "misa"]

DEFAULT_FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}


def cmd(x1: torch.Tensor, x2: torch.Tensor, n_moments: int = 5) -> torch.Tensor:
    """Central moment discrepancy between two batches ``(B, d)``.

    ``‖E[x1] − E[x2]‖ + Σ_{k=2..n} ‖E[(x1 − E x1)^k] − E[(x2 − E x2)^k]‖`` (Zellinger et al. 2017,
    without the range scaling, as MISA uses it).
    """
    if n_moments < 1:
        raise ValueError(f"n_moments must be >= 1, got {n_moments}")
    m1, m2 = x1.mean(0), x2.mean(0)
    c1, c2 = x1 - m1, x2 - m2
    total = torch.linalg.vector_norm(m1 - m2)
    for k in range(2, n_moments + 1):
        total = total + torch.linalg.vector_norm(c1.pow(k).mean(0) - c2.pow(k).mean(0))
    return total


def diff_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Soft orthogonality ``mean((Â^T B̂)^2)`` of two batches ``(B, d)``.

    Each batch is centred over samples and its rows scaled to unit norm, so the loss is the mean
    squared correlation between the features and does not change with their scale. The norm stays
    in the graph (the released MISA detaches it): detached, the gradient points along each row and
    descends by shrinking the rows towards the batch mean, which leaves the loss where it was but
    collapses the private and shared vectors to constants while the gradient grows as
    ``1/‖row‖`` (to ~200 against the task's ~1 on the synthetic source); under norm clipping
    that scaled the task's gradient away and MISA pre-trained to a constant predictor.
    """
    a = a.flatten(1) - a.flatten(1).mean(0, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(0, keepdim=True)
    a = a / (a.norm(dim=1, keepdim=True) + 1e-6)
    b = b / (b.norm(dim=1, keepdim=True) + 1e-6)
    return (a.t() @ b).pow(2).mean()


class MISAExtractor(nn.Module):
    """MISA's utterance extractor: ``(B, T, D) → (B, 4H)``.

    bi-LSTM → LayerNorm → bi-LSTM; the output concatenates the final hidden states of both
    layers in both directions.
    """

    def __init__(self, in_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.rnn1 = SequenceLSTM(in_dim, hidden_size, bidirectional=True)
        self.norm = nn.LayerNorm(2 * hidden_size)
        self.rnn2 = SequenceLSTM(2 * hidden_size, hidden_size, bidirectional=True)
        self.out_dim = 4 * hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.rnn1(x)
        h2 = self.rnn2(self.norm(h1))
        return torch.cat([final_state(h1, True), final_state(h2, True)], dim=-1)


class MISA(MSABackbone):
    """MISA with CMD similarity, soft-orthogonality difference and reconstruction losses.

    Args:
        feature_dims: feature size per modality, in order.
        out_dim: 1 for regression, else the number of logits.
        task: ``"regression"`` or ``"classification"``.
        hidden_size: d, the shared width of the projected, private and shared vectors (MISA: 128).
        rnn_hidden: LSTM hidden size per modality; None gives ``min(D_m, 64)`` (MISA: ``D_m``).
        fusion_heads: heads of the fusion transformer (MISA: 2); must divide ``hidden_size``.
        fusion_ff: its feed-forward width.
        fusion_dropout: its dropout (PyTorch's default 0.1 in MISA).
        dropout: in the head (MISA: 0.5).
        diff_weight, sim_weight, recon_weight: loss weights (MISA's MOSI values 0.3, 1.0, 1.0).
        n_moments: moments in the CMD (MISA: 5).
        text_encoder: ``"features"`` (text features through the LSTM extractor) or ``"bert"``
            (token ids through a BERT; ``feature_dims["text"]`` is then the vocabulary size).
        text_config: ``BertConfig`` keys over the small default (hidden ``hidden_size``, 2 layers,
            ``fusion_heads`` heads, feed-forward ``fusion_ff``); :meth:`config` records the whole one.
        pretrained_path: a local directory of BERT weights (``save_pretrained`` format).

    After a training-mode forward, :meth:`auxiliary_loss` holds the weighted sum and
    ``loss_parts`` the unweighted ``{"diff", "sim", "recon"}``; in eval mode both are empty.
    """

    def __init__(
        self,
        feature_dims: dict[str, int] | None = None,
        out_dim: int = 1,
        task: Task = "regression",
        hidden_size: int = 32,
        rnn_hidden: dict[str, int] | None = None,
        fusion_heads: int = 2,
        fusion_ff: int = 128,
        fusion_dropout: float = 0.1,
        dropout: float = 0.5,
        diff_weight: float = 0.3,
        sim_weight: float = 1.0,
        recon_weight: float = 1.0,
        n_moments: int = 5,
        text_encoder: Literal["features", "bert"] = "features",
        text_config: dict[str, Any] | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__(dict(DEFAULT_FEATURE_DIMS) if feature_dims is None else feature_dims, out_dim, task)
        if hidden_size % fusion_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by fusion_heads {fusion_heads}")
        for name, p in [("fusion_dropout", fusion_dropout), ("dropout", dropout)]:
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if n_moments < 1:
            raise ValueError(f"n_moments must be >= 1, got {n_moments}")
        if text_encoder not in ("features", "bert"):
            raise ValueError(f"text_encoder must be 'features' or 'bert', got {text_encoder!r}")
        if text_encoder == "features" and (text_config is not None or pretrained_path is not None):
            raise ValueError("text_config and pretrained_path configure text_encoder = 'bert'; it is 'features'")
        if text_encoder == "bert" and "text" not in self.feature_dims:
            raise KeyError(f"text_encoder = 'bert' reads the 'text' modality; got {list(self.modalities)}")
        self.text_encoder_kind = text_encoder
        self.token_modalities = ("text",) if text_encoder == "bert" else ()
        lstm_mods = [m for m in self.modalities if m not in self.token_modalities]
        rnn_hidden = dict(rnn_hidden or {})
        unknown = set(rnn_hidden) - set(self.modalities)
        if unknown:
            raise KeyError(f"rnn_hidden names unknown modality {sorted(unknown)}; known: {list(self.modalities)}")
        if set(rnn_hidden) & set(self.token_modalities):
            raise KeyError("rnn_hidden names 'text', which text_encoder = 'bert' reads with a BERT, not an LSTM")
        self.rnn_hidden = {m: int(rnn_hidden.get(m, min(self.feature_dims[m], 64))) for m in lstm_mods}
        self.hidden_size, self.fusion_heads, self.fusion_ff = int(hidden_size), int(fusion_heads), int(fusion_ff)
        self.fusion_dropout, self.dropout = float(fusion_dropout), float(dropout)
        self.loss_weights = {"diff": float(diff_weight), "sim": float(sim_weight), "recon": float(recon_weight)}
        self.n_moments = int(n_moments)

        d, mods = self.hidden_size, self.modalities
        if self.token_modalities:
            defaults = dict(hidden_size=d, num_hidden_layers=2, num_attention_heads=self.fusion_heads,
                            intermediate_size=self.fusion_ff, max_position_embeddings=512)
            bert = build_bert(self.feature_dims["text"], defaults, text_config, pretrained_path)
            self.text_encoder = BertTextEncoder(bert)
        self.extract = nn.ModuleDict({m: MISAExtractor(self.feature_dims[m], self.rnn_hidden[m]) for m in lstm_mods})
        width = {m: self.text_encoder.out_dim if m in self.token_modalities else self.extract[m].out_dim for m in mods}
        self.project = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(width[m], d), nn.ReLU(), nn.LayerNorm(d)) for m in mods}
        )
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.Sigmoid()) for m in mods})
        self.shared = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())
        self.recon = nn.ModuleDict({m: nn.Linear(d, d) for m in mods})
        layer = nn.TransformerEncoderLayer(
            d, fusion_heads, dim_feedforward=fusion_ff, dropout=fusion_dropout, batch_first=True
        )
        self.fusion = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        n = 2 * len(mods)
        self.head = nn.Sequential(
            nn.Linear(n * d, n * d // 2), nn.Dropout(dropout), nn.ReLU(), nn.Linear(n * d // 2, self.out_dim)
        )
        self.loss_parts: dict[str, torch.Tensor] = {}

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        """``text=(B, T_t, D_t), audio=(B, T_a, D_a), vision=(B, T_v, D_v)`` → ``(B, out_dim)``."""
        self.check_features(features)
        check_batch(features)
        mods = self.modalities
        projected = {m: self.project[m](self._utterance(m, features[m])) for m in mods}  # (B, d) each
        private = {m: self.private[m](projected[m]) for m in mods}
        shared = {m: self.shared(projected[m]) for m in mods}

        tokens = torch.stack([private[m] for m in mods] + [shared[m] for m in mods], dim=1)  # (B, 2M, d)
        fused = self.fusion(tokens)
        out = self.head(rearrange(fused, "b n d -> b (n d)"))

        if self.training:
            self.loss_parts = self._losses(projected, private, shared)
            self._aux_loss = sum(self.loss_weights[k] * v for k, v in self.loss_parts.items())
        else:
            self.loss_parts, self._aux_loss = {}, None
        return out

    def _utterance(self, m: str, x: torch.Tensor) -> torch.Tensor:
        """Modality ``m``'s utterance vector: the LSTM extractor's ``(B, 4H)``, or for token text the
        mean of the BERT's states over its non-zero (real-token) steps ``(B, H)``."""
        if m in self.token_modalities:
            return masked_mean(self.text_encoder(x))
        return self.extract[m](x)

    def _losses(
        self, projected: dict[str, torch.Tensor], private: dict[str, torch.Tensor], shared: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        mods = self.modalities
        pairs = list(itertools.combinations(mods, 2))
        zero = projected[mods[0]].new_zeros(())
        sim = sum((cmd(shared[a], shared[b], self.n_moments) for a, b in pairs), zero) / max(len(pairs), 1)
        diff = sum(diff_loss(private[m], shared[m]) for m in mods)
        diff = diff + sum((diff_loss(private[a], private[b]) for a, b in pairs), zero)
        recon = sum(F.mse_loss(self.recon[m](private[m] + shared[m]), projected[m]) for m in mods) / len(mods)
        return {"diff": diff, "sim": sim, "recon": recon}

    def config(self) -> dict:
        return dict(
            feature_dims=dict(self.feature_dims),
            out_dim=self.out_dim,
            task=self.task,
            hidden_size=self.hidden_size,
            rnn_hidden=dict(self.rnn_hidden),
            fusion_heads=self.fusion_heads,
            fusion_ff=self.fusion_ff,
            fusion_dropout=self.fusion_dropout,
            dropout=self.dropout,
            diff_weight=self.loss_weights["diff"],
            sim_weight=self.loss_weights["sim"],
            recon_weight=self.loss_weights["recon"],
            n_moments=self.n_moments,
            **self._text_config(),
        )

    def _text_config(self) -> dict[str, Any]:
        """The text encoder's keywords (none for text features, so those configs read as before);
        the BERT's config as plain data, whose weights are in the backbone's own file."""
        if not self.token_modalities:
            return {}
        return dict(text_encoder="bert", text_config=config_record(self.text_encoder.config, BERT_KEYS))


@register_backbone
def misa(**cfg) -> MISA:
    """MISA with CPU-small defaults (``hidden_size=32``, LSTM sizes ``min(D_m, 64)``) and MISA's
    MOSI loss weights; any :class:`MISA` keyword is accepted."""
    return MISA(**cfg)


@register_hook_spec(MISA)
def _misa_hook_spec(model: MISA) -> HookSpec:
    """MPLMM Sec. 4.5 puts MISA's prompts into its fusion layers.

    - Missing-signal prompts join each modality's projected vector ``project.<m>`` (BD, width d):
      MISA's last modality-specific point, right after its input projection (eq. 3), from which
      both of that modality's fusion tokens (private and shared) are formed.
    - Missing-type prompts are extra tokens in the fusion transformer ``fusion``, whose input is
      the ``(B, 2M, d)`` stack of private and shared vectors; they are removed before the head,
      which reads the ``2M`` original tokens.
    - MMGM works on the forward keywords; with ``text_encoder="bert"`` it works on the text at the
      BERT's output ``text_encoder`` (BTD), the published model's feature extractor. The head trains
      with the prompts; a modality's encoder for CGGM is its extractor (or BERT) and projection.
    """
    d, mods = model.hidden_size, model.modalities
    tokens = model.token_modalities
    return HookSpec(
        features={
            m: {"path": "text_encoder", "layout": "BTD", "width": model.text_encoder.out_dim} if m in tokens else m
            for m in mods
        },
        signal={m: SignalTarget(path=f"project.{m}", layout="BD", width=d) for m in mods},
        type=[TypeTarget(path="fusion", layout="BTD", arg=0, width=d)],
        trainable=["head"],
        encoders={
            m: ModalityEncoder(output=f"project.{m}", layout="BD", width=d,
                               params=["text_encoder" if m in tokens else f"extract.{m}", f"project.{m}"])
            for m in mods
        },
    )

"""MulT, the Multimodal Transformer (Tsai et al., ACL 2019), as the MPLMM code uses it.

Data path for M >= 2 modalities ``(m0, ..., m_{M-1})`` (by default M = 3: text, audio, vision):

1. ``proj[m]``: Conv1d(k=1, no bias) ``D_m → d``, computed as one matmul; output ``(B, d, T_m)``
   (layout BDT).
2. ``cross[f"{m}_from_{s}"]``: ``M(M-1)`` crossmodal transformers (six for M = 3), one per
   ordered pair, queries from ``m``, keys/values from ``s``; each ``(B, T_m, d)``.
3. ``mem[m]``: a self-attention transformer of width ``(M-1)d`` (``2d`` for M = 3) over the
   ``M-1`` crossmodal outputs into ``m``, concatenated on features in modality order:
   ``(B, T_m, (M-1)d) → (B, 1, (M-1)d)``: only its last step, the one the head reads, is
   computed by its last layer (``last_step_only``; the same values as the full memory's last step).
4. The last step of each memory, concatenated ``(B, M(M-1)d)``, goes to ``head``:
   ``out_layer(h + proj2(dropout(relu(proj1(h)))))`` → ``(B, out_dim)``.

The layer count grows as ``M(M-1)`` crossmodal transformers, and the memories and head widen with
M: M = 4 has 12 crossmodal transformers, memories of width 3d and a head input of 12d. M = 3 is the
published model, parameter names, shapes and initialisation order unchanged.

Lengths may differ per modality (unaligned data). Hook points: ``proj.<m>`` (missing-signal
prompts, BDT), ``mem.<m>`` (missing-type prompts, first positional argument ``(B, T, (M-1)d)``),
``head`` (trainable). A prompter may prepend tokens to a memory's input; its output holds only
the last step, never those tokens (``returns_prompt_rows`` is False, so nothing is stripped). Passing ``prefix_len=l`` to the
memory says its first ``l`` steps are such tokens: they get no positional embedding and the real
steps keep the positions they have without them (the spec's ``prefix_len_arg``).

As in the released MulT/MPLMM code: the first modality's raw features get embedding dropout
before projection; attention dropout of a crossmodal transformer is that of its key/value
modality; the memory transformers have ``max(layers, 3)`` layers; the future mask is on.
Unlike it, the projection is always applied (MulT skips it when ``D_m == d``), and by default
(``positions="all"``) every step of every transformer input gets a positional embedding, where
MulT gives none to all-zero (padding) steps; ``positions="skip_padding"`` does as MulT does, so a
zero-filled (missing) modality is not a sequence of pure positional embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from promptkit.hookspec import HookSpec, ModalityEncoder, SignalTarget, TypeTarget, register_hook_spec

from ._registry import register_backbone
from .base import MSABackbone, Task
from .layers import PointwiseConv1d, PositionMode, TransformerEncoder, check_position_mode, dropout

__all__ = ["MulT", "MulTHead", "mult"]

DEFAULT_FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}


class MulTHead(nn.Module):
    """MulT's residual output head: ``(B, F) → (B, out_dim)``."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj1 = nn.Linear(in_dim, in_dim)
        self.proj2 = nn.Linear(in_dim, in_dim)
        self.out_layer = nn.Linear(in_dim, out_dim)
        self.dropout = dropout

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.proj2(dropout(F.relu(self.proj1(h)), self.dropout, self.training))
        return self.out_layer(h + z)


class MulT(MSABackbone):
    """Multimodal Transformer over M >= 2 modalities (the published model has three).

    Args:
        feature_dims: feature size per modality, in order; at least two entries (default
            text 300, audio 5, vision 20).
        out_dim: 1 for regression, else the number of logits.
        task: ``"regression"`` or ``"classification"``.
        d_model: projection width d; the memories are ``(M-1)d`` wide (``2d`` for three
            modalities). Must divide by ``num_heads``.
        num_heads: attention heads in every transformer.
        layers: layers of each crossmodal transformer; memories have ``max(layers, 3)``.
        attn_dropout: attention dropout of the memory transformers, and the default for
            crossmodal transformers reading the first modality.
        cross_attn_dropout: attention dropout of the crossmodal transformers, keyed by the
            modality they read keys/values from (MulT's ``attn_dropout``, ``attn_dropout_a``,
            ``attn_dropout_v``). Missing entries: ``attn_dropout`` for the first modality, 0.0
            for the others (MulT's defaults).
        relu_dropout: dropout after the FFN's ReLU.
        res_dropout: dropout on residual branches.
        embed_dropout: dropout on the embedded transformer inputs and on the first modality's
            raw features.
        out_dropout: dropout inside the head.
        attn_mask: MulT's future mask in every transformer (the released code's default).
        positions: positional embeddings of every transformer's inputs (queries and crossmodal
            keys alike; see :class:`~backbones.layers.TransformerEncoder`). ``"all"`` (default):
            every step ``t`` gets position ``t + 1``. ``"skip_padding"``: as the authors' released
            MulT, an all-zero input step gets none and real steps keep ``t + 1``.
            ``"skip_padding_renumber"``: no position for all-zero steps, real steps numbered
            ``1..n`` in order. Padding steps are attended in every mode.
    """

    def __init__(
        self,
        feature_dims: dict[str, int] | None = None,
        out_dim: int = 1,
        task: Task = "regression",
        d_model: int = 30,
        num_heads: int = 5,
        layers: int = 5,
        attn_dropout: float = 0.1,
        cross_attn_dropout: dict[str, float] | None = None,
        relu_dropout: float = 0.1,
        res_dropout: float = 0.1,
        embed_dropout: float = 0.25,
        out_dropout: float = 0.0,
        attn_mask: bool = True,
        positions: PositionMode = "all",
    ) -> None:
        super().__init__(dict(DEFAULT_FEATURE_DIMS) if feature_dims is None else feature_dims, out_dim, task)
        if len(self.modalities) < 2:
            raise ValueError(
                f"MulT needs at least 2 modalities (its crossmodal transformers pair them), got "
                f"{len(self.modalities)}: {list(self.modalities)}"
            )
        for name in self.modalities:
            if not name.isidentifier():
                raise ValueError(f"modality name {name!r} must be a Python identifier")
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        dropouts = dict(
            attn_dropout=attn_dropout,
            relu_dropout=relu_dropout,
            res_dropout=res_dropout,
            embed_dropout=embed_dropout,
            out_dropout=out_dropout,
        )
        for name, p in dropouts.items():
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        self.d_model, self.num_heads, self.layers = int(d_model), int(num_heads), int(layers)
        self.attn_dropout, self.relu_dropout, self.res_dropout = attn_dropout, relu_dropout, res_dropout
        self.embed_dropout, self.out_dropout, self.attn_mask = embed_dropout, out_dropout, bool(attn_mask)
        self.cross_attn_dropout = self._resolve_cross_dropout(cross_attn_dropout)
        self.positions = check_position_mode(positions)

        d, mods = self.d_model, self.modalities
        width = self.memory_width
        shared = dict(
            num_heads=num_heads,
            relu_dropout=relu_dropout,
            res_dropout=res_dropout,
            embed_dropout=embed_dropout,
            attn_mask=attn_mask,
            positions=self.positions,
        )
        self.proj = nn.ModuleDict({m: PointwiseConv1d(self.feature_dims[m], d, bias=False) for m in mods})
        self.cross = nn.ModuleDict(
            {
                f"{m}_from_{s}": TransformerEncoder(
                    d, layers=layers, attn_dropout=self.cross_attn_dropout[s], **shared
                )
                for m in mods
                for s in mods
                if s != m
            }
        )
        self.mem = nn.ModuleDict(
            {
                m: TransformerEncoder(width, layers=max(layers, 3), attn_dropout=attn_dropout, last_step_only=True,
                                      **shared)
                for m in mods
            }
        )
        self.head = MulTHead(len(mods) * width, self.out_dim, out_dropout)

    @property
    def memory_width(self) -> int:
        """Width of each memory transformer, ``(M-1)·d``: its ``M-1`` crossmodal inputs side by side."""
        return (len(self.modalities) - 1) * self.d_model

    def _resolve_cross_dropout(self, given: dict[str, float] | None) -> dict[str, float]:
        given = dict(given or {})
        unknown = set(given) - set(self.modalities)
        if unknown:
            raise KeyError(
                f"cross_attn_dropout names unknown modality {sorted(unknown)}; known: {list(self.modalities)}"
            )
        out = {}
        for i, m in enumerate(self.modalities):
            p = float(given.get(m, self.attn_dropout if i == 0 else 0.0))
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"cross_attn_dropout[{m!r}] must lie in [0, 1], got {p}")
            out[m] = p
        return out

    def sources(self, modality: str) -> list[str]:
        """Keys in ``cross`` of the ``M-1`` crossmodal transformers that feed ``modality``'s memory,
        in modality order (the order their outputs are concatenated in)."""
        return [f"{modality}_from_{s}" for s in self.modalities if s != modality]

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        """One ``(B, T_m, D_m)`` tensor per modality (``text=..., audio=..., vision=...`` by
        default) → ``(B, out_dim)``."""
        self.check_features(features)
        sizes = {m: features[m].shape[0] for m in self.modalities}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all modalities need the same batch size, got {sizes}")

        first = self.modalities[0]
        seqs = {}
        for m in self.modalities:
            x = features[m]
            if m == first:
                x = dropout(x, self.embed_dropout, self.training)
            seqs[m] = self.proj[m](x.transpose(1, 2)).transpose(1, 2)  # (B, T_m, d); views, no copies

        last = []
        for m in self.modalities:
            crossed = [self.cross[f"{m}_from_{s}"](seqs[m], seqs[s]) for s in self.modalities if s != m]
            memory = self.mem[m](torch.cat(crossed, dim=-1))  # (B, 1, (M-1)d): its last step, all the head reads
            last.append(memory[:, -1])
        return self.head(torch.cat(last, dim=-1))

    def config(self) -> dict:
        return dict(
            feature_dims=dict(self.feature_dims),
            out_dim=self.out_dim,
            task=self.task,
            d_model=self.d_model,
            num_heads=self.num_heads,
            layers=self.layers,
            attn_dropout=self.attn_dropout,
            cross_attn_dropout=dict(self.cross_attn_dropout),
            relu_dropout=self.relu_dropout,
            res_dropout=self.res_dropout,
            embed_dropout=self.embed_dropout,
            out_dropout=self.out_dropout,
            attn_mask=self.attn_mask,
            positions=self.positions,
        )


@register_backbone
def mult(**cfg) -> MulT:
    """MulT with MOSI-shaped defaults: ``feature_dims={"text": 300, "audio": 5, "vision": 20}``,
    ``d_model=30``, ``num_heads=5``, ``layers=5``; any :class:`MulT` keyword is accepted."""
    return MulT(**cfg)


@register_hook_spec(MulT)
def _mult_hook_spec(model: MulT) -> HookSpec:
    """Signal prompts on each projection (BDT, width d), type prompts on each memory's input
    (BTD, width (M-1)d: 2d for three modalities), the head trainable; a modality's encoder for
    CGGM is its projection, the M-1 crossmodal transformers into it and its memory."""
    d, mods, width = model.d_model, model.modalities, model.memory_width
    return HookSpec(
        features={m: m for m in mods},
        signal={m: SignalTarget(path=f"proj.{m}", layout="BDT", width=d) for m in mods},
        type=[
            TypeTarget(path=f"mem.{m}", layout="BTD", arg=0, width=width, prefix_len_arg="prefix_len")
            for m in mods
        ],
        trainable=["head"],
        encoders={
            m: ModalityEncoder(
                output=f"mem.{m}",
                layout="BTD",
                params=[f"proj.{m}", *(f"cross.{n}" for n in model.sources(m)), f"mem.{m}"],
                width=width,
            )
            for m in mods
        },
    )

"""MMIN, the Missing Modality Imagination Network (Zhao, Li and Jin, ACL 2021), for M >= 2 modalities.

Data path (``M`` modalities, width ``d``, ``F = M·d``):

1. ``encoders[m]``: one utterance encoder per modality, ``(B, T_m, D_m) → (B, d)``: a one-layer
   LSTM over every step, max-pooled over time (``pool="max"``; ``"last"``: the final state),
   dropout, ``Linear(hidden → d)``. Stacked in modality order: ``h (B, M, d)``.
2. The incomplete view ``h' (B, F)``: ``h`` with every missing modality's slot set to zero (by
   ``torch.where``, so the missing input's content, even NaN, cannot reach it).
3. ``forward_cra``: a cascade residual autoencoder. Starting from ``z_0 = h'`` each of its
   ``cra_blocks`` autoencoders refines the estimate, ``z_k = z_{k-1} + AE_k(z_{k-1})``; the output
   ``ĥ = z_K (B, F)`` is the imagined complete view. Each AE is
   ``F → ae_hidden → ae_bottleneck → ae_hidden → F`` (ReLU between, a linear output), and its
   bottleneck ``l_k (B, ae_bottleneck)`` is kept.
4. The readout ``r``: ``readout="imagined"`` (default): per modality the real vector where the
   modality is available and the imagined slot of ``ĥ`` where it is missing, ``(B, F)``;
   ``readout="latent"`` (the paper's choice): the bottlenecks ``[l_1, ..., l_K] (B, K·ae_bottleneck)``.
5. ``head``: ``Linear → ReLU → dropout → Linear`` to ``(B, out_dim)``.

Training losses (training mode only, left weighted in :meth:`auxiliary_loss`; the engine adds the
task loss):

- imagination: ``imagination_weight · MSE(ĥ, sg(h))`` over the *missing* modalities' slots only
  (mean over those slots' features; zero, with a graph, when nothing is missing), where ``sg(h)``
  are the real vectors of the same encoders on the complete inputs, detached. Training batches
  therefore carry the dropped modalities' real features: the mask says what the prediction may
  see, the features are the complete ones the targets come from.
- cycle consistency: ``backward_cra`` (same shape as ``forward_cra``) maps ``ĥ`` back to the
  incomplete view; ``cycle_weight · MSE(B(ĥ), sg(h'))`` over the *available* slots.

The prediction never depends on a missing modality's input (step 2 zeroes its slot before the
CRA and the readout), in training and evaluation alike.

Departures from the paper: the paper's encoders are LSTM+max-pool (audio, vision) and a TextCNN
(text), pre-trained on complete data, and the imagination targets come from those fixed
pre-trained encoders; here every modality has the LSTM encoder and the targets are the model's own
encoders, detached. The paper's imagination loss covers the whole forward output and its
classifier reads the CRA's latents (``readout="latent"`` here); by default this one reads the real
and imagined vectors (the brief's variant) and the imagination loss covers only the missing
slots. The paper's AEs use batch normalisation; these do not (tiny and single-sample batches).

Hook spec (so MMIN can also be wrapped as a frozen backbone by the MPLMM prompter, as every
registered backbone can): signal prompts on each encoder's projection ``encoders.<m>.out`` (BD,
width d), type prompts prepended to each encoder's LSTM input ``encoders.<m>.rnn`` (BTD, width
D_m; trimmed from its output before pooling), the head trainable. The prompter calls the backbone
without a mask, so wrapped MMIN sees every modality as available (the prompter's generated inputs
stand in for the missing ones) and its CRA does not enter the prediction.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from promptkit.hookspec import HookSpec, ModalityEncoder, SignalTarget, TypeTarget, register_hook_spec
from promptkit.modalities import check_mask

from ._registry import register_backbone
from .base import MSABackbone, Task
from .encoders import SequenceLSTM, check_batch

__all__ = ["MMIN", "CascadeResidualAE", "PooledLSTMEncoder", "ResidualAE", "mmin"]

DEFAULT_FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}
Pool = Literal["max", "last"]
Readout = Literal["imagined", "latent"]


class PooledLSTMEncoder(nn.Module):
    """``(B, T, D_in) → (B, out_dim)``: LSTM over every step, pooled over time, dropout, Linear.

    Args:
        in_dim: input feature size D_in.
        hidden_size: LSTM hidden size.
        out_dim: utterance vector size d.
        pool: ``"max"`` (max over the steps' outputs, MMIN's audio/vision encoders) or ``"last"``.
        dropout: before the projection.
    """

    def __init__(self, in_dim: int, hidden_size: int, out_dim: int, pool: Pool = "max", dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in ("max", "last"):
            raise ValueError(f"pool must be 'max' or 'last', got {pool!r}")
        self.rnn = SequenceLSTM(in_dim, hidden_size)
        self.pool: Pool = pool
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, D_in)`` → ``(B, out_dim)``."""
        seq = self.rnn(x)  # (B, T, H)
        pooled = seq.amax(dim=1) if self.pool == "max" else seq[:, -1]
        return self.out(self.drop(pooled))


class ResidualAE(nn.Module):
    """One autoencoder of the cascade: ``(B, F) → (residual (B, F), bottleneck (B, L))``."""

    def __init__(self, width: int, hidden: int, bottleneck: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, bottleneck), nn.ReLU()
        )
        self.decoder = nn.Sequential(
            nn.Linear(bottleneck, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encoder(z)
        return self.decoder(latent), latent


class CascadeResidualAE(nn.Module):
    """A cascade of residual autoencoders: ``z_k = z_{k-1} + AE_k(z_{k-1})``, ``z_0`` the input.

    ``forward(z0 (B, F)) → (z_K (B, F), latents (B, K·bottleneck))``.

    Args:
        width: F, the concatenated representation's size.
        blocks: K >= 1 autoencoders.
        hidden: each AE's hidden layer size.
        bottleneck: each AE's bottleneck size.
        dropout: inside each AE.
    """

    def __init__(self, width: int, blocks: int, hidden: int, bottleneck: int, dropout: float = 0.0) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"a cascade needs at least one autoencoder, got cra_blocks={blocks}")
        self.blocks = nn.ModuleList(ResidualAE(width, hidden, bottleneck, dropout) for _ in range(blocks))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents = []
        for block in self.blocks:
            delta, latent = block(z)
            z = z + delta
            latents.append(latent)
        return z, torch.cat(latents, dim=-1)


class MMIN(MSABackbone):
    """Missing Modality Imagination Network over M >= 2 modalities.

    Args:
        feature_dims: feature size per modality, in order (default text 300, audio 5, vision 20).
        out_dim: 1 for regression, else the number of logits.
        task: ``"regression"`` or ``"classification"``.
        d_model: utterance vector width d per modality.
        hidden_size: LSTM hidden size of every encoder.
        pool: time pooling of the encoders, ``"max"`` or ``"last"``.
        cra_blocks: autoencoders in each CRA (forward and backward).
        ae_hidden: hidden size of each autoencoder.
        ae_bottleneck: bottleneck size of each autoencoder.
        head_hidden: hidden size of the classifier/regressor.
        readout: ``"imagined"`` (real vectors of the available modalities, imagined ones of the
            missing) or ``"latent"`` (the forward CRA's bottlenecks, as the paper).
        dropout: in the encoders, the autoencoders and the head.
        imagination_weight: weight of the imagination (forward) MSE in :meth:`auxiliary_loss`.
        cycle_weight: weight of the cycle-consistency (backward) MSE.
    """

    def __init__(
        self,
        feature_dims: dict[str, int] | None = None,
        out_dim: int = 1,
        task: Task = "regression",
        d_model: int = 32,
        hidden_size: int = 32,
        pool: Pool = "max",
        cra_blocks: int = 2,
        ae_hidden: int = 64,
        ae_bottleneck: int = 32,
        head_hidden: int = 32,
        readout: Readout = "imagined",
        dropout: float = 0.1,
        imagination_weight: float = 1.0,
        cycle_weight: float = 1.0,
    ) -> None:
        super().__init__(dict(DEFAULT_FEATURE_DIMS) if feature_dims is None else feature_dims, out_dim, task)
        if len(self.modalities) < 2:
            raise ValueError(
                f"MMIN needs at least 2 modalities (it imagines missing ones from the others), got "
                f"{len(self.modalities)}: {list(self.modalities)}"
            )
        sizes = dict(d_model=d_model, hidden_size=hidden_size, ae_hidden=ae_hidden, ae_bottleneck=ae_bottleneck,
                     head_hidden=head_hidden, out_dim=out_dim)
        bad = {k: v for k, v in sizes.items() if int(v) < 1}
        if bad:
            raise ValueError(f"MMIN sizes must be positive, got {bad}")
        if readout not in ("imagined", "latent"):
            raise ValueError(f"readout must be 'imagined' or 'latent', got {readout!r}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout must lie in [0, 1], got {dropout}")
        for name, w in (("imagination_weight", imagination_weight), ("cycle_weight", cycle_weight)):
            if float(w) < 0:
                raise ValueError(f"{name} must be >= 0, got {w}")
        self.d_model, self.hidden_size, self.pool = int(d_model), int(hidden_size), pool
        self.cra_blocks, self.ae_hidden, self.ae_bottleneck = int(cra_blocks), int(ae_hidden), int(ae_bottleneck)
        self.head_hidden, self.readout, self.dropout = int(head_hidden), readout, float(dropout)
        self.imagination_weight, self.cycle_weight = float(imagination_weight), float(cycle_weight)

        width = self.joint_width
        self.encoders = nn.ModuleDict(
            {m: PooledLSTMEncoder(self.feature_dims[m], self.hidden_size, self.d_model, pool, self.dropout)
             for m in self.modalities}
        )
        self.forward_cra = CascadeResidualAE(width, self.cra_blocks, self.ae_hidden, self.ae_bottleneck, self.dropout)
        self.backward_cra = CascadeResidualAE(width, self.cra_blocks, self.ae_hidden, self.ae_bottleneck, self.dropout)
        head_in = width if readout == "imagined" else self.cra_blocks * self.ae_bottleneck
        self.head = nn.Sequential(
            nn.Linear(head_in, self.head_hidden), nn.ReLU(), nn.Dropout(self.dropout),
            nn.Linear(self.head_hidden, self.out_dim),
        )

    @property
    def joint_width(self) -> int:
        """F = M·d, the width of the concatenated representation the CRAs read and write."""
        return len(self.modalities) * self.d_model

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every modality's utterance vector: ``{m: (B, T_m, D_m)}`` → ``h (B, M, d)``."""
        return torch.stack([self.encoders[m](features[m]) for m in self.modalities], dim=1)

    def forward(self, mask: torch.Tensor | None = None, **features: torch.Tensor) -> torch.Tensor:
        """One ``(B, T_m, D_m)`` tensor per modality and ``mask (B, M)`` bool (True = available;
        None: complete) → ``(B, out_dim)``. In training mode the weighted imagination and cycle
        losses are left in :meth:`auxiliary_loss`; in eval mode it is None."""
        self._aux_loss = None
        self.check_features(features)
        batch = check_batch({m: features[m] for m in self.modalities})
        h = self.encode(features)  # (B, M, d)
        if mask is None:
            mask = torch.ones(batch, len(self.modalities), dtype=torch.bool, device=h.device)
        check_mask(mask, len(self.modalities), batch)
        avail = mask.to(h.device)[:, :, None]  # (B, M, 1)

        incomplete = torch.where(avail, h, h.new_zeros(()))  # h' (B, M, d): missing slots zero
        imagined, latents = self.forward_cra(incomplete.flatten(1))  # (B, F), (B, K·L)
        if self.readout == "imagined":
            r = torch.where(avail, incomplete, imagined.reshape(h.shape)).flatten(1)  # (B, F)
        else:
            r = latents
        out = self.head(r)

        if self.training:
            self._aux_loss = self._training_losses(h, incomplete, imagined, avail)
        return out

    def _training_losses(
        self, h: torch.Tensor, incomplete: torch.Tensor, imagined: torch.Tensor, avail: torch.Tensor
    ) -> torch.Tensor:
        """Weighted imagination + cycle loss; ``h, incomplete (B, M, d)``, ``imagined (B, F)``,
        ``avail (B, M, 1)`` bool."""
        missing = (~avail).to(h.dtype)
        shape = h.shape
        sq = F.mse_loss(imagined.reshape(shape), h.detach(), reduction="none")  # (B, M, d)
        imagination = (sq * missing).sum() / (missing.sum() * shape[-1]).clamp_min(1.0)
        recon, _ = self.backward_cra(imagined)  # (B, F)
        sq_back = F.mse_loss(recon.reshape(shape), incomplete.detach(), reduction="none")
        present = avail.to(h.dtype)
        cycle = (sq_back * present).sum() / (present.sum() * shape[-1]).clamp_min(1.0)
        return self.imagination_weight * imagination + self.cycle_weight * cycle

    def config(self) -> dict:
        return dict(
            feature_dims=dict(self.feature_dims),
            out_dim=self.out_dim,
            task=self.task,
            d_model=self.d_model,
            hidden_size=self.hidden_size,
            pool=self.pool,
            cra_blocks=self.cra_blocks,
            ae_hidden=self.ae_hidden,
            ae_bottleneck=self.ae_bottleneck,
            head_hidden=self.head_hidden,
            readout=self.readout,
            dropout=self.dropout,
            imagination_weight=self.imagination_weight,
            cycle_weight=self.cycle_weight,
        )


@register_backbone
def mmin(**cfg) -> MMIN:
    """MMIN with CPU-small, MOSI-shaped defaults: ``feature_dims={"text": 300, "audio": 5, "vision": 20}``,
    ``d_model=32``, a 2-block CRA (64 → 32 → 64); any :class:`MMIN` keyword is accepted."""
    return MMIN(**cfg)


@register_hook_spec(MMIN)
def _mmin_hook_spec(model: MMIN) -> HookSpec:
    """Signal prompts on each encoder's output projection (BD, width d), type prompts on each
    encoder's LSTM input (BTD, width D_m), the head trainable; a modality's encoder for CGGM is
    ``encoders.<m>`` (its ``(B, d)`` vector)."""
    d, mods = model.d_model, model.modalities
    return HookSpec(
        features={m: m for m in mods},
        signal={m: SignalTarget(path=f"encoders.{m}.out", layout="BD", width=d) for m in mods},
        type=[TypeTarget(path=f"encoders.{m}.rnn", layout="BTD", arg=0, width=model.feature_dims[m]) for m in mods],
        trainable=["head"],
        encoders={m: ModalityEncoder(output=f"encoders.{m}", layout="BD", params=[f"encoders.{m}"], width=d)
                  for m in mods},
    )

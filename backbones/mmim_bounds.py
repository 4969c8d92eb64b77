"""MMIM's mutual-information bounds: the Barber-Agakov bound (:class:`MMILB`) with its Gaussian
entropy estimate, and the CPC/InfoNCE bound (:class:`CPC`). See :mod:`backbones.mmim`."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CPC", "MMILB", "gaussian_entropy"]

_JITTER = 1e-4


def gaussian_entropy(samples: torch.Tensor) -> torch.Tensor:
    """Entropy of a Gaussian fitted to ``samples`` ``(N, k)``, up to its constant: ``½ logdet Σ``.

    Σ is the biased sample covariance plus ``1e-4·I``. Needs ``N >= 2``.
    """
    if samples.dim() != 2 or samples.shape[0] < 2:
        raise ValueError(f"gaussian_entropy needs samples (N >= 2, k), got {tuple(samples.shape)}")
    c = samples - samples.mean(0, keepdim=True)
    cov = c.t() @ c / samples.shape[0]
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    return 0.5 * torch.logdet(cov + _JITTER * eye)


class MMILB(nn.Module):
    """The Barber-Agakov lower bound I(x; y) >= H(y) + E[log q(y|x)] between two vectors.

    Args:
        x_dim: size of the conditioning vector x (text).
        y_dim: size of the predicted vector y (a non-text modality); ``y_dim // 4 >= 1``.
    """

    def __init__(self, x_dim: int, y_dim: int) -> None:
        super().__init__()
        if y_dim < 4:
            raise ValueError(f"MMILB needs a modality vector of size >= 4 (its entropy uses y_dim // 4), got {y_dim}")
        self.mu = nn.Sequential(nn.Linear(x_dim, y_dim), nn.ReLU(), nn.Linear(y_dim, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, y_dim), nn.ReLU(), nn.Linear(y_dim, y_dim), nn.Tanh())
        self.entropy_prj = nn.Sequential(nn.Linear(y_dim, y_dim // 4), nn.Tanh())
        self.entropy_prj.requires_grad_(False)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E_batch[log q(y|x)] up to its constant, for ``x: (B, x_dim)``, ``y: (B, y_dim)``."""
        mu, logvar = self.mu(x), self.logvar(x)
        return (-0.5 * ((y - mu).pow(2) / logvar.exp() + logvar)).sum(-1).mean()

    def entropy(
        self, y: torch.Tensor, labels: torch.Tensor | None, memory: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """H(y) estimate over ``y`` and ``memory``; returns it and this batch's detached samples.

        With ``labels`` the groups are ``pos`` (label > 0) and ``neg`` (label < 0), averaged;
        without, one group ``all``. A group with fewer than two samples is skipped.
        """
        p = self.entropy_prj(y)
        if labels is None:
            groups = {"all": p}
        else:
            lab = labels.reshape(labels.shape[0], -1)[:, 0]
            groups = {"pos": p[lab > 0], "neg": p[lab < 0]}
        memory = memory or {}
        terms = []
        for name, s in groups.items():
            if name in memory:
                s = torch.cat([memory[name].to(s), s], dim=0)
            if s.shape[0] >= 2:
                terms.append(gaussian_entropy(s))
        h = torch.stack(terms).mean() if terms else y.new_zeros(())
        return h, {k: v.detach() for k, v in groups.items()}


class CPC(nn.Module):
    """CPC/InfoNCE between a modality vector x and the fusion vector z: ``−mean(log softmax)``.

    z predicts x through ``net``; both are L2-normalised; the positive is the sample's own pair,
    the negatives the other samples' predictions.
    """

    def __init__(self, x_dim: int, z_dim: int) -> None:
        super().__init__()
        self.net = nn.Linear(z_dim, x_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        pred = nn.functional.normalize(self.net(z), dim=-1)
        x = nn.functional.normalize(x, dim=-1)
        scores = x @ pred.t()  # (B, B)
        return -(scores.diagonal() - torch.logsumexp(scores, dim=-1)).mean()

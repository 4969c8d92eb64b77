"""Rendering features: per modality ``(N, T, D)`` float32 from the latents, the world's mixings and time.

Version 1 renders in one pass; version 2 adds the offset and works in place, block by block
(:data:`_CHUNK` samples), to bound the temporaries of large splits. Both draw from the split's
stream in the same order: latents, then per modality its view noise, nuisance and per-step noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .latents import _draw_latents, _draw_view
from .shapes import MODALITIES
from .views import VIEWS, VIEWS_V2, ModalityView

_CHUNK = 2048  # samples per in-place block: bounds the temporaries of large splits


def _generate_split(
    rng: np.random.Generator,
    n: int,
    mixing: Mapping[str, np.ndarray],
    nuisance: Mapping[str, np.ndarray],
    noise_mult: float,
    lens: Mapping[str, int],
    drawn: Sequence[str] = MODALITIES,
    views: Mapping[str, ModalityView] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple]:
    """Version 1: the standard modalities ``drawn`` (a prefix of text, audio, vision) from ``rng``.

    Returns:
        features ``{m: (N, T_m, D_m)}``, labels ``(N,)`` and the latents ``(z, time params)``
        the extra modalities share.
    """
    z, labels, times = _draw_latents(rng, n)
    feats = {}
    for m in drawn:
        v = (views or {}).get(m, VIEWS[m])
        feats[m] = _modality_features(rng, z, times, v, mixing[m], nuisance[m], None, noise_mult, lens[m])
    return feats, labels, (z, times)


def _modality_features(
    rng: np.random.Generator,
    z: np.ndarray,
    times: tuple,
    v: ModalityView,
    mixing: np.ndarray,
    nuisance: np.ndarray,
    offset: np.ndarray | None,
    noise_mult: float,
    t_len: int,
) -> np.ndarray:
    """Steps 3-5 for one modality: ``(N, T, D)`` float32 from latents ``z (N, 6)``.

    ``offset`` None is version 1 (no offset, one pass); an offset ``(D,)`` is version 2 (in place,
    block by block). Both draw, in order: the view noise, the nuisance, the per-step noise.
    """
    n = z.shape[0]
    h, u = _draw_view(rng, z, v)
    if offset is None:
        static = h @ mixing + u @ nuisance  # (N, D)
        profile = _temporal_profile(*times, t_len)  # (N, T)
        x = rng.standard_normal((n, t_len, static.shape[1]), dtype=np.float32)
        x *= np.float32(v.step_noise * noise_mult)
        x += profile[:, :, None].astype(np.float32) * static[:, None, :].astype(np.float32)
        x *= (profile > 0)[:, :, None]
        return x
    static = (h @ mixing + u @ nuisance).astype(np.float32)  # (N, D)
    profile = _temporal_profile(*times, t_len).astype(np.float32)  # (N, T)
    valid = profile > 0
    off = offset.astype(np.float32)
    x = rng.standard_normal((n, t_len, static.shape[1]), dtype=np.float32)
    for i in range(0, n, _CHUNK):  # in place, block by block: x = (o + a(r_t) c + sigma eps) * valid
        xb = x[i : i + _CHUNK]
        xb *= np.float32(v.step_noise * noise_mult)
        xb += profile[i : i + _CHUNK, :, None] * static[i : i + _CHUNK, None, :]
        xb += off
        xb *= valid[i : i + _CHUNK, :, None]
    return x


def _temporal_profile(frac, centers, widths, heights, t_len: int) -> np.ndarray:
    """Per-sample profile ``(N, T)``: 0 on the left padding, mean 1 over the valid steps."""
    valid = np.maximum(1, np.round(frac * t_len)).astype(int)  # (N,)
    start = t_len - valid
    steps = np.arange(t_len)[None, :]
    rel = (steps - start[:, None] + 0.5) / valid[:, None]  # relative time in (0, 1) on valid steps
    bumps = heights[:, None, :] * np.exp(-0.5 * ((rel[:, :, None] - centers[:, None, :]) / widths[:, None, :]) ** 2)
    prof = 0.3 + bumps.sum(-1)
    mask = steps >= start[:, None]
    prof = prof * mask
    prof /= prof.sum(1, keepdims=True) / valid[:, None]
    return prof


def _generate_split_v2(
    rng: np.random.Generator,
    n: int,
    mixing: Mapping[str, np.ndarray],
    nuisance: Mapping[str, np.ndarray],
    offset: Mapping[str, np.ndarray],
    noise_mult: float,
    lens: Mapping[str, int],
    drawn: Sequence[str] = MODALITIES,
    views: Mapping[str, ModalityView] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple]:
    """Version 2: as :func:`_generate_split`, every valid step carrying its modality's offset."""
    z, labels, times = _draw_latents(rng, n)
    feats = {}
    for m in drawn:
        v = (views or {}).get(m, VIEWS_V2[m])
        feats[m] = _modality_features(rng, z, times, v, mixing[m], nuisance[m], offset[m], noise_mult, lens[m])
    return feats, labels, (z, times)

"""What a seed fixes for both domains: each modality's mixings and (version 2) its feature offset.

The standard modalities' world comes from one random stream, in a fixed order; each extra
modality's from a stream of its own (seed and a CRC-32 of its name), so extras never change the
standard modalities' draws.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

from .latents import N_LATENT
from .shapes import MODALITIES
from .views import EXTRA_OFFSET, OFFSETS_V2, VIEWS, FeatureOffset, ModalityView

_EXTRA_STREAM = 0x6D6F64  # first spawn-key word of the extra modalities' own random streams


def _make_world(
    rng: np.random.Generator, dims: Mapping[str, int], views: Mapping[str, ModalityView] = VIEWS
) -> dict:
    """Mixings per standard modality: ``W`` (6, D_m), ``C`` (r, D_m) and the alternatives the
    target mixes in (``views`` gives each one's nuisance rank and scale)."""
    world: dict = {"W": {}, "W_alt": {}, "C": {}, "C_alt": {}}
    for m in MODALITIES:
        d, v = dims[m], views[m]
        for key in ("W", "W_alt"):  # (6, D): a unit-variance view gives unit-variance features
            world[key][m] = rng.standard_normal((N_LATENT, d)) / np.sqrt(N_LATENT)
        for key in ("C", "C_alt"):
            world[key][m] = rng.standard_normal((v.nuisance_rank, d)) * v.nuisance_scale / np.sqrt(v.nuisance_rank)
    return world


def _make_world_v2(
    rng: np.random.Generator, dims: Mapping[str, int], views: Mapping[str, ModalityView] = VIEWS
) -> dict:
    """Version 2: the mixings of :func:`_make_world` plus a common offset ``o_m`` (D_m,) per modality."""
    world = _make_world(rng, dims, views)
    world["offset"] = {}
    for m in MODALITIES:
        world["offset"][m] = _offset(rng, world["W"][m][0], dims[m], OFFSETS_V2[m])
    return world


def _offset(rng: np.random.Generator, verbal_loading: np.ndarray, d: int, o: FeatureOffset) -> np.ndarray:
    """An offset ``(D,)`` of per-feature RMS ``o.scale`` at cosine ``o.verbal_align`` to the loading."""
    verbal = verbal_loading / np.linalg.norm(verbal_loading)
    r = rng.standard_normal(d)
    r -= (r @ verbal) * verbal  # the part orthogonal to the verbal loading
    r /= max(np.linalg.norm(r), 1e-12)
    direction = o.verbal_align * verbal + np.sqrt(max(0.0, 1 - o.verbal_align**2)) * r
    return o.scale * np.sqrt(d) * direction


def _extra_rng(seed: int, name: str, where: tuple[int, ...] = ()) -> np.random.Generator:
    """An extra modality's own stream: a function of ``seed``, its name and ``where`` (domain, split)."""
    key = (_EXTRA_STREAM, zlib.crc32(name.encode()), *where)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key)))


def _add_extra_world(world: dict, name: str, rng: np.random.Generator, d: int, v: ModalityView, version: int) -> None:
    """An extra modality's mixings ``W, W_alt`` (6, D), ``C, C_alt`` (r, D) and (version 2) offset (D,)."""
    for key in ("W", "W_alt"):
        world[key][name] = rng.standard_normal((N_LATENT, d)) / np.sqrt(N_LATENT)
    for key in ("C", "C_alt"):
        world[key][name] = rng.standard_normal((v.nuisance_rank, d)) * v.nuisance_scale / np.sqrt(v.nuisance_rank)
    if version == 2:
        world["offset"][name] = _offset(rng, world["W"][name][0], d, EXTRA_OFFSET)

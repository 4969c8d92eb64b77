"""How each modality sees the latents (gains, noise, nuisance) and, in version 2, its feature offset.

The standard three modalities' views per version, and the defaults of an extra modality.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModalityView:
    """How one modality sees the latents (see :mod:`promptkit.data.synthetic`, steps 3-5)."""

    verbal_gain: float  # g_m on the verbal sentiment factor z[0]
    nonverbal_gain: float  # g_m on the non-verbal sentiment factor z[1]
    shared_gain: float  # g_m on the shared non-sentiment factors
    view_noise: float  # nu_m
    nuisance_rank: int  # r, number of modality-specific nuisance factors
    nuisance_scale: float  # per-feature std of u_m C_m
    step_noise: float  # sigma_m


VIEWS: dict[str, ModalityView] = {
    "text": ModalityView(1.0, 0.1, 1.0, 0.5, 8, 0.5, 0.6),
    "audio": ModalityView(0.2, 0.5, 1.0, 0.5, 2, 0.5, 0.4),
    "vision": ModalityView(0.12, 0.38, 1.0, 0.5, 4, 0.5, 0.4),
}

# --- version 2 (see :mod:`promptkit.data.synthetic`) ----------------------------------------
VIEWS_V2: dict[str, ModalityView] = {
    "text": ModalityView(1.0, 0.1, 1.0, 0.5, 8, 0.5, 0.6),
    "audio": ModalityView(0.45, 0.4, 1.0, 0.5, 2, 0.5, 0.4),
    "vision": ModalityView(0.3, 0.25, 1.0, 0.5, 4, 0.5, 0.4),
}


@dataclass(frozen=True)
class FeatureOffset:
    """The common offset ``o_m`` every valid step carries (version 2)."""

    scale: float  # per-feature RMS of o_m
    verbal_align: float  # cosine between o_m and the modality's verbal-sentiment loading W_m[0]


OFFSETS_V2: dict[str, FeatureOffset] = {
    "text": FeatureOffset(3.0, 0.9),
    "audio": FeatureOffset(0.5, 0.0),
    "vision": FeatureOffset(0.5, 0.0),
}

# --- extra modalities (any name beyond text/audio/vision; see "Any modality set" in the package docstring)
EXTRA_VIEW: dict[int, ModalityView] = {  # by version
    1: ModalityView(0.12, 0.38, 1.0, 0.5, 4, 0.5, 0.4),
    2: ModalityView(0.3, 0.3, 1.0, 0.5, 4, 0.5, 0.4),
}
EXTRA_OFFSET = FeatureOffset(0.5, 0.0)  # version 2
EXTRA_FEATURE_DIM = 16

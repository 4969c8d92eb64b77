"""Each sample's draws that every modality shares (steps 1-2: latents, label, time) and a modality's view.

``z (N, 6)``: two sentiment factors (verbal, non-verbal) and four shared non-sentiment ones.
"""

from __future__ import annotations

import numpy as np

from .views import ModalityView

N_SENT = 2
N_SHARED = 4
N_LATENT = N_SENT + N_SHARED
SENTIMENT_WEIGHTS = np.array([0.9, np.sqrt(1 - 0.9**2)])  # verbal, non-verbal; unit norm


def _draw_latents(rng: np.random.Generator, n: int):
    """Steps 1-2 and the time draws of step 5, in the order both versions draw them: latents
    ``z (N, 6)``, labels ``(N,)`` and the temporal-profile parameters."""
    z = rng.standard_normal((n, N_LATENT))
    y = 1.5 * z[:, :N_SENT] @ SENTIMENT_WEIGHTS + 0.3 * rng.standard_normal(n)
    labels = (np.round(np.clip(y, -3.0, 3.0) * 5.0) / 5.0).astype(np.float32)
    frac = rng.uniform(0.3, 1.0, n)
    centers = rng.uniform(0.0, 1.0, (n, 2))
    widths = rng.uniform(0.05, 0.25, (n, 2))
    heights = rng.uniform(0.5, 2.0, (n, 2))
    return z, labels, (frac, centers, widths, heights)


def _draw_view(rng: np.random.Generator, z: np.ndarray, v: ModalityView) -> tuple[np.ndarray, np.ndarray]:
    """Step 3-4's draws for one modality: its noisy view ``h (N, 6)`` and nuisance ``u (N, r)``."""
    n = z.shape[0]
    gains = np.array([v.verbal_gain, v.nonverbal_gain] + [v.shared_gain] * N_SHARED)
    h = gains * z + v.view_noise * rng.standard_normal((n, N_LATENT))
    return h, rng.standard_normal((n, v.nuisance_rank))

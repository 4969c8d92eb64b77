"""Seeds: every random draw of a run derives from ``(seed, epoch, purpose)``.

Every epoch starts by reseeding torch/random/numpy from ``(seed, epoch)`` and building the
shuffling and mask generators from ``(seed, epoch)``, so a run resumed at an epoch boundary draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any repr-able parts, e.g. ``derive_seed(seed, epoch, "loader")``."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and numpy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def seeded_generator(seed: int) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded with ``seed`` (e.g. for drawing masks)."""
    return torch.Generator().manual_seed(seed)

"""CMU-MOSI's shapes: the standard modalities, feature sizes, sequence lengths, split sizes; the versions."""

from __future__ import annotations

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}
ALIGNED_LENS: dict[str, int] = {"text": 50, "audio": 50, "vision": 50}
UNALIGNED_LENS: dict[str, int] = {"text": 50, "audio": 375, "vision": 500}
TARGET_SIZES: dict[str, int] = {"train": 1284, "valid": 229, "test": 686}
SOURCE_SIZES: dict[str, int] = {"train": 16326, "valid": 1871, "test": 4659}  # version 2: CMU-MOSEI's
SOURCE_SIZES_V1: dict[str, int] = {"train": 2568, "valid": 458, "test": 1372}
VERSIONS: tuple[int, ...] = (1, 2)
DESCRIPTION = "synthetic (promptkit embedded generator, CMU-MOSI shapes), NOT CMU-MOSI"

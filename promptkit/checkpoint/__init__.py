"""Atomic safetensors checkpoints: tensors plus a JSON ``meta`` dict, never pickle.

A promptkit checkpoint (format version 2) is a safetensors file whose string metadata holds

- ``format`` = ``"promptkit"`` and ``version``: refuse anything else;
- ``kind``: what the file is (``"backbone"``, ``"train-state"``, ``"adapter"``, ``"weights"``);
- ``meta``: the caller's JSON;
- ``model_prefix`` and ``fingerprint``: sha256 of the model tensors' names and shapes (those under
  ``model_prefix``), so a checkpoint of a different model is refused by name, not loaded wrongly;
- ``integrity``: JSON ``{"tensors": {name: sha256}, "metadata": {key: sha256}}``, which refuses a
  damaged, truncated or edited file naming the tensor or key (:mod:`.integrity`, which also says
  what these unkeyed digests do not protect against).

The parts, one concern each: :mod:`.header` (the format keys and the safetensors header as read),
:mod:`.files` (:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`check_layout`),
:mod:`.fingerprints` (layout fingerprints and weights digests), :mod:`.integrity` (the version-2
digests), :mod:`.legacy` (which version-1 files still load, their header checked against the
data), :mod:`.flatten` (optimizer and scheduler state as tensors and JSON). Every name is
importable from ``promptkit.checkpoint``.
"""

from .errors import CheckpointError, LegacyCheckpointWarning
from .files import check_layout, load_checkpoint, save_checkpoint
from .fingerprints import fingerprint, state_digest, weights_digest
from .flatten import (
    add_prefix,
    optimizer_from_flat,
    optimizer_to_flat,
    scheduler_to_json,
    take_prefix,
)
from .header import FORMAT, INTEGRITY_KEY, LEGACY_VERSIONS, VERSION
from .legacy import DTYPE_SIZES, LEGACY_KINDS, check_legacy_header

__all__ = [
    "DTYPE_SIZES",
    "FORMAT",
    "INTEGRITY_KEY",
    "LEGACY_KINDS",
    "LEGACY_VERSIONS",
    "VERSION",
    "CheckpointError",
    "LegacyCheckpointWarning",
    "add_prefix",
    "check_layout",
    "check_legacy_header",
    "fingerprint",
    "load_checkpoint",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "save_checkpoint",
    "scheduler_to_json",
    "state_digest",
    "take_prefix",
    "weights_digest",
]

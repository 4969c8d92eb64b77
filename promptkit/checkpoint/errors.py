"""The errors and warnings checkpoint reading raises."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


class LegacyCheckpointWarning(UserWarning):
    """A file in an older promptkit format was loaded under that format's weaker checks."""

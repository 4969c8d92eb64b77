"""What the loaders raise and warn about for a file's content."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file does not have the layout or content its format needs."""


class AudioInfWarning(UserWarning):
    """``-inf`` audio values were replaced by 0 (the MulT audio quirk)."""


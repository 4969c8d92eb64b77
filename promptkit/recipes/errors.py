"""The error a recipe that cannot be used raises."""

from __future__ import annotations


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file, the section and the key."""


def in_section(section: str, error: ValueError) -> str:
    """A section's own error, ``"<key> must be ..."``, as ``"[section] <key> must be ..."``.

    A section checks itself (its ``__post_init__``) without knowing the file it came from nor, for a
    stage, which table it is; the reader adds both. A message that names its table itself (it
    starts with ``[``, e.g. ``"[data.synthetic] ..."``) is kept as it is.
    """
    message = str(error)
    return message if message.startswith("[") else f"[{section}] {message}"

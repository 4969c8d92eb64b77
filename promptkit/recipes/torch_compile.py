"""A stage's ``compile`` value: off, on (inductor) or a ``torch.compile`` backend name."""

from __future__ import annotations

import difflib

from .errors import RecipeError

_COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")
"""Common ``torch.compile`` backends, accepted without importing TorchDynamo."""


def compile_backend(value: bool | str | None) -> str | None:
    """The ``torch.compile`` backend a stage's ``compile`` value asks for: None (off) for false,
    ``"inductor"`` for true, else the backend name itself."""
    if value is None or value is False:
        return None
    return "inductor" if value is True else str(value)


def check_compile_backend(value: bool | str | None, what: str) -> None:
    """Raise a RecipeError naming ``what`` when ``value`` is a backend name torch does not know."""
    if not isinstance(value, str) or value in _COMPILE_BACKENDS:
        return
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if value in known:
        return
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if value.lower() in ("true", "false", "yes", "no", "on", "off", ""):
        hint = "; a recipe turns it on or off with true or false, without quotes"
    raise RecipeError(
        f"{what} {value!r} is not a torch.compile backend{hint} (common ones: {', '.join(_COMPILE_BACKENDS)})"
    )

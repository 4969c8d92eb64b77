"""Where the model runs: the torch device a run asks for, and the ``torch.compile`` backend a
stage asks for (both checked before anything is written)."""

from __future__ import annotations

import json
from typing import Any

import torch

from .. import compile as _compile
from ..recipes import compile_backend


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` → CUDA if available else CPU; an unusable device is an error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device ({e}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but torch.cuda.is_available() is False")
        if dev.index is not None:
            torch.cuda.set_device(dev.index)
    return dev


def check_compile(stage: Any) -> str | None:
    """The ``torch.compile`` backend ``stage.compile`` asks for (None: eager).

    Raises:
        RuntimeError: the backend cannot run here (e.g. inductor without a C++ compiler).
    """
    value = getattr(stage, "compile", False)
    backend = compile_backend(value)
    if backend is None:
        return None
    ok, why = _compile.compile_available(backend)  # looked up at call time (tests patch it)
    if not ok:
        raise RuntimeError(
            f"the stage asks for torch.compile (compile = {json.dumps(value)}, backend {backend!r}) but it cannot run "
            f"here: {why}; set compile = false in the recipe, leave out --compile, or pick --compile eager"
        )
    return backend

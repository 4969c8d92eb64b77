"""``torch.compile`` for backbones and prompters, with the prompter's hooks kept working.

A :class:`~promptkit.prompter.MissingModalityPrompter` is compiled by compiling its *backbone* in
place (``nn.Module.compile``): the signal and type hooks sit on the backbone's submodules, so
TorchDynamo traces them into the same graph as the layers they modify, and the per-batch mask
and prompt tokens they read become graph inputs. The prompter's own data-dependent work (mask
checks, MMGM's choice of which rows to generate) stays eager, where it costs little. Module
identity, parameters, ``state_dict`` and hooks are unchanged, so optimisers, checkpoints and
``prompts_disabled()`` behave as before; a new mode (prompts on/off, a new batch size) costs one
recompilation.
"""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .prompter import MissingModalityPrompter

__all__ = ["compile_available", "compile_model", "is_compiled"]


def compile_available(backend: str = "inductor") -> tuple[bool, str]:
    """Whether ``torch.compile`` with ``backend`` can run here, and why not when it cannot.

    Inductor on a CPU needs a C++ compiler and Python's headers; other backends need neither.
    """
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    if backend == "inductor":
        if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
            return False, "no C++ compiler (c++/g++/clang++) on PATH; inductor needs one for CPU kernels"
        include = sysconfig.get_paths().get("include")
        if not include or not (Path(include) / "Python.h").is_file():
            return False, f"Python.h not found under {include!r}; install the Python development headers"
    return True, ""


def compile_model(
    model: nn.Module,
    *,
    backend: str = "inductor",
    mode: str | None = None,
    dynamic: bool | None = None,
    fullgraph: bool = False,
    **options: Any,
) -> nn.Module:
    """Compile ``model`` in place and return it.

    Args:
        model: a backbone, or a ``MissingModalityPrompter`` (its backbone is compiled; see the
            module docstring).
        backend, mode, dynamic, fullgraph: passed to ``torch.compile``.
        **options: further ``torch.compile`` keywords (e.g. ``options={...}``).

    Raises:
        RuntimeError: when :func:`compile_available` says the backend cannot run here.
    """
    ok, why = compile_available(backend)
    if not ok:
        raise RuntimeError(f"cannot compile with backend {backend!r}: {why}")
    target = model.backbone if isinstance(model, MissingModalityPrompter) else model
    target.compile(backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph, **options)
    return model


def is_compiled(model: nn.Module) -> bool:
    """True when ``model`` (or, for a prompter, its backbone) was compiled with :func:`compile_model`."""
    target = model.backbone if isinstance(model, MissingModalityPrompter) else model
    return getattr(target, "_compiled_call_impl", None) is not None

"""The output selector of a hook spec: how a prediction is read from a model's return value.

A selector is a key (``"M"`` for MMSA's dict outputs), an index (``0`` for a tuple), a function
``out -> tensor`` or None (the model returns the tensor itself). A function is data only as its
record ``{"call": "module:qualname"}``, read back as a :class:`CallRef`: text, imported only by
:meth:`CallRef.resolve`, for a source the user runs as code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch


@dataclass(frozen=True)
class CallRef:
    """The record of an ``output`` function, as a file or a recipe holds it: ``{"call": call}``.

    ``call`` is ``"module:qualname"``, or None when the function was a lambda or a local one. It
    is kept as text; only :meth:`resolve` imports it.
    """

    call: str | None

    def __post_init__(self) -> None:
        if self.call is not None:
            module, sep, qualname = self.call.partition(":") if isinstance(self.call, str) else ("", "", "")
            if not sep or not all(p.isidentifier() for p in module.split(".") + qualname.split(".")):
                raise ValueError(
                    f"HookSpec.output: {{'call': {self.call!r}}} must name a function as 'package.module:function'"
                )

    def to_dict(self) -> dict[str, str | None]:
        return {"call": self.call}

    def resolve(self) -> Callable[[Any], torch.Tensor]:
        """Import the function. Only for a source the user runs as code (a recipe they trust).

        Raises:
            ValueError: a lambda or a local function (None), or a path that does not import.
        """
        if self.call is None:
            raise ValueError(
                "HookSpec.output was a lambda or a local function when this spec was saved, so it cannot be "
                "rebuilt from the file; pass the spec (with its output function) again, or use a key/index"
            )
        return _import_callable(self.call)


OutputSelector = Union[str, int, Callable[[Any], torch.Tensor], CallRef, None]
"""A key, an index or a function that picks the prediction out of a model's return value (a
:class:`CallRef` stands for a function not given yet)."""


def callable_path(fn: Callable) -> str | None:
    """``"module:qualname"`` of a module-level function or class, None for a lambda or a local one."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def _import_callable(path: str) -> Callable:
    module, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"HookSpec.output: cannot import the output function {path!r}: {e}") from None
    if not callable(obj):
        raise ValueError(f"HookSpec.output: {path!r} is not callable")
    return obj


def coerce_output(value: Any) -> OutputSelector:
    if value is None or callable(value) or isinstance(value, CallRef) or (isinstance(value, str) and value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Mapping) and set(value) == {"call"}:
        if value["call"] is not None and not isinstance(value["call"], str):
            raise TypeError(
                f"HookSpec.output: 'call' must be a 'package.module:function' string, got {value['call']!r}"
            )
        return CallRef(value["call"])
    raise TypeError(
        f"HookSpec.output must be a key (str), an index (int), a function out -> tensor, or None; got {value!r}"
    )


def select_output(out: Any, selector: OutputSelector) -> torch.Tensor:
    """Pick the prediction out of a model's return value ``out`` (see :attr:`HookSpec.output`).

    Raises:
        TypeError: ``out`` is not a tensor and no selector is set, or the selection is not a tensor.
        KeyError / IndexError: the key or index is not in ``out``.
    """
    if selector is None:
        picked = out
    elif isinstance(selector, str):
        if not isinstance(out, Mapping):
            raise TypeError(f"HookSpec.output is the key {selector!r}, but the model returned a {type(out).__name__}")
        if selector not in out:
            raise KeyError(f"HookSpec.output key {selector!r} is not in the model's output; its keys: {list(out)}")
        picked = out[selector]
    elif isinstance(selector, int):
        if not isinstance(out, Sequence) or isinstance(out, (str, bytes, torch.Tensor)):
            raise TypeError(f"HookSpec.output is the index {selector}, but the model returned a {type(out).__name__}")
        if not -len(out) <= selector < len(out):
            raise IndexError(f"HookSpec.output index {selector} is out of range for the model's {len(out)} outputs")
        picked = out[selector]
    elif isinstance(selector, CallRef):
        raise TypeError(
            f"HookSpec.output is the record {selector.to_dict()} of a function, not the function: nothing named in a "
            "file is imported; pass the spec with its output function (e.g. hooks=HookSpec(..., output=fn))"
        )
    else:
        picked = selector(out)
    if isinstance(picked, torch.Tensor):
        return picked
    if selector is None:
        keys = f" (keys {list(out)})" if isinstance(out, Mapping) else ""
        raise TypeError(
            f"the model returned a {type(out).__name__}{keys}, not a tensor; set the hook spec's 'output' to the key, "
            "the index or a function that gives the prediction (B, out_dim), e.g. hooks={..., 'output': 'M'}"
        )
    raise TypeError(f"HookSpec.output {selector!r} selected a {type(picked).__name__}, not a tensor")


"""Hook points: where a prompter attaches to a backbone, named by module paths.

A :class:`HookSpec` names, for one backbone,

- ``features``: modality → the forward keyword argument that carries its extracted features
  ``(B, T_m, D_m)``. MMGM runs on these before the backbone sees them.
- ``signal``: modality → :class:`SignalTarget`, the module whose *output* is that modality's
  projected sequence; the missing-signal prompts are added to it (paper eq. 3).
- ``type``: list of :class:`TypeTarget`, encoder/fusion modules that receive the missing-type
  prompts as extra tokens on their input sequence (paper eq. 4-5).
- ``trainable``: backbone module paths that train together with the prompts (the output head).
- ``encoders``: modality → :class:`ModalityEncoder`, that modality's own encoder, for CGGM.
- ``output``: how to read the prediction ``(B, out_dim)`` from the model's return value when it is
  not a tensor: a key (``"M"`` for MMSA's dict outputs), an index (``0`` for a tuple) or a
  function ``out -> tensor``. None: the model returns the tensor itself.

A spec is data: :meth:`HookSpec.to_dict` writes a function ``output`` as the record
``{"call": "module:qualname"}`` (``null`` for a lambda or a local function), and
:meth:`HookSpec.from_dict` reads that record back as a :class:`CallRef` - text, never imported. A
spec holding a :class:`CallRef` cannot run a model until the function is given back: by the
caller (``from_pretrained(backbone, path, hooks=spec)``), or by :meth:`HookSpec.resolved`, which
imports it and is called only for a source the user runs as code (a recipe's ``[hooks]``, when
a run builds the backbone). An adapter file never makes promptkit import anything.

Every caller that runs a bare backbone (the zero-fill baseline, pre-training, evaluation) goes
through :func:`call_backbone`, which maps modality names to the spec's keyword arguments and reads
the output, so a model whose forward takes ``lang=``/``acoustic=`` and returns a dict works the same
everywhere.

Paths are those of ``model.named_modules()``; ``""`` is the model itself. Backbones register
their default spec with :func:`register_hook_spec`; any other model passes a spec (or a plain dict
of the same shape) to ``promptkit.wrap(model, hooks=...)``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Union

import torch
from torch import nn

SeqLayout = Literal["BTD", "BDT", "TBD"]


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
_LAYOUTS = ("BTD", "BDT", "TBD")
_SIGNAL_LAYOUTS = _LAYOUTS + ("BD",)


@dataclass
class SignalTarget:
    """A module whose output is one modality's projected sequence.

    Attributes:
        path: module path.
        layout: axis order of the output: ``"BTD"``, ``"BDT"`` (a Conv1d's), ``"TBD"``, or ``"BD"``
            for an utterance-level vector (the prompt's time steps are averaged).
        width: the feature size D of the output; inferred from the module when None.
    """

    path: str
    layout: Literal["BTD", "BDT", "TBD", "BD"] = "BTD"
    width: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in _SIGNAL_LAYOUTS:
            raise ValueError(
                f"signal target {self.path!r}: layout must be one of {_SIGNAL_LAYOUTS}, got {self.layout!r}"
            )


@dataclass
class TypeTarget:
    """An encoder/fusion module that receives the missing-type prompts as extra input tokens.

    Attributes:
        path: module path.
        layout: ``"BTD"`` (batch first) or ``"TBD"`` (time first) for the sequence argument.
        arg: position (int) or keyword (str) of the sequence argument in the module's forward.
        width: the token width D; inferred from the module when None.
        padding_mask_arg: keyword of a ``(B, T)`` key-padding mask (True = pad) that must grow
            with the prompt tokens, if the module takes one.
        keep: keep the prompt tokens in the module's output (default: they are removed, so the
            output has the original length; a tuple output has its first element trimmed).
        prefix_len_arg: keyword of the module's forward that tells it how many leading tokens of
            the sequence are prompts (an int), for modules that can then leave those tokens out of
            their positional numbering (MulT's memories: ``"prefix_len"``). Needed by
            ``PrompterConfig(type_positions="prefix")``; None when the module has no such keyword.
    """

    path: str
    layout: SeqLayout = "BTD"
    arg: int | str = 0
    width: int | None = None
    padding_mask_arg: str | None = None
    keep: bool = False
    prefix_len_arg: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("BTD", "TBD"):
            raise ValueError(f"type target {self.path!r}: layout must be 'BTD' or 'TBD', got {self.layout!r}")
        if self.prefix_len_arg is not None and not (
            isinstance(self.prefix_len_arg, str) and self.prefix_len_arg.isidentifier()
        ):
            raise ValueError(
                f"type target {self.path!r}: prefix_len_arg must be a keyword name or None, got {self.prefix_len_arg!r}"
            )
        if self.prefix_len_arg is not None and self.prefix_len_arg in (self.arg, self.padding_mask_arg):
            raise ValueError(
                f"type target {self.path!r}: prefix_len_arg {self.prefix_len_arg!r} is also its "
                "sequence or mask argument"
            )


@dataclass
class ModalityEncoder:
    """One modality's encoder, for per-modality plug-ins such as CGGM.

    Attributes:
        output: module path whose output represents the modality: ``(B, D)`` or a sequence.
        layout: ``"BD"`` for vectors, else the sequence layout (the last step is read out).
        params: module paths whose parameters belong to this modality (default: ``[output]``).
        width: the output feature size D; inferred when None.
    """

    output: str
    layout: Literal["BD", "BTD", "BDT", "TBD"] = "BD"
    params: list[str] = field(default_factory=list)
    width: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("BD",) + _LAYOUTS:
            raise ValueError(f"encoder {self.output!r}: layout must be 'BD' or one of {_LAYOUTS}")
        if not self.params:
            self.params = [self.output]


@dataclass
class HookSpec:
    """Where prompts attach to one backbone. See the module docstring."""

    features: dict[str, str]
    signal: dict[str, SignalTarget] = field(default_factory=dict)
    type: list[TypeTarget] = field(default_factory=list)
    trainable: list[str] = field(default_factory=list)
    encoders: dict[str, ModalityEncoder] = field(default_factory=dict)
    output: OutputSelector = None

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("a HookSpec needs 'features': modality -> forward argument name")
        self.output = _coerce_output(self.output)
        self.signal = {m: _coerce(SignalTarget, t) for m, t in self.signal.items()}
        self.type = [_coerce(TypeTarget, t) for t in self.type]
        self.encoders = {m: _coerce(ModalityEncoder, e, key="output") for m, e in self.encoders.items()}
        for section in ("signal", "encoders"):
            unknown = set(getattr(self, section)) - set(self.features)
            if unknown:
                raise KeyError(
                    f"HookSpec.{section} names modality {sorted(unknown)} that 'features' does not know; "
                    f"known: {list(self.features)}"
                )

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.features)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HookSpec:
        """The spec a dict (as :meth:`to_dict` writes it, or a recipe's ``[hooks]``) describes.
        Imports nothing: an ``output`` of ``{"call": ...}`` becomes a :class:`CallRef`."""
        allowed = {"features", "signal", "type", "trainable", "encoders", "output"}
        unknown = set(d) - allowed
        if unknown:
            raise KeyError(f"unknown HookSpec key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; a function ``output`` is written as the record ``{"call": "module:qualname"}``
        (``None`` for a lambda or a local function): provenance, not something to import."""
        d = asdict(self)
        if isinstance(self.output, CallRef):
            d["output"] = self.output.to_dict()
        elif callable(self.output):
            d["output"] = {"call": callable_path(self.output)}
        return d

    @property
    def needs_output_function(self) -> bool:
        """True when ``output`` is a :class:`CallRef`: a function recorded but not given."""
        return isinstance(self.output, CallRef)

    def resolved(self) -> HookSpec:
        """This spec with a :class:`CallRef` ``output`` imported (itself when there is none). Call
        it only for a spec from a source run as code (a recipe), never for one read from a file a
        model came in.

        Raises:
            ValueError: the function cannot be imported, or was a lambda (see :meth:`CallRef.resolve`).
        """
        if not isinstance(self.output, CallRef):
            return self
        return replace(self, output=self.output.resolve())

    def kwargs(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Modality-keyed features → the backbone's forward keywords (``features`` mapping)."""
        unknown = [m for m in features if m not in self.features]
        if unknown:
            raise KeyError(
                f"the hook spec has no forward argument for modality {unknown}; its 'features' maps {self.features}"
            )
        return {self.features[m]: x for m, x in features.items()}

    def read_output(self, out: Any) -> torch.Tensor:
        """The prediction ``(B, out_dim)`` in a model's return value, by :attr:`output`."""
        return select_output(out, self.output)

    def validate(self, model: nn.Module) -> None:
        """Check that every path exists in ``model``; suggest the closest names otherwise."""
        paths = [t.path for t in self.signal.values()] + [t.path for t in self.type] + list(self.trainable)
        for enc in self.encoders.values():
            paths += [enc.output, *enc.params]
        for p in paths:
            resolve_module(model, p)


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


def _coerce_output(value: Any) -> OutputSelector:
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


def spec_or_none(model: nn.Module, hooks: HookSpec | dict | None = None) -> HookSpec | None:
    """``hooks`` as a HookSpec, else the spec registered for the model's class, else None."""
    if hooks is not None:
        return hooks if isinstance(hooks, HookSpec) else HookSpec.from_dict(dict(hooks))
    try:
        return hook_spec_for(model)
    except KeyError:
        return None


def backbone_caller(model: nn.Module, hooks: HookSpec | dict | None = None) -> Callable[..., torch.Tensor]:
    """``call(features, **extra) -> prediction`` for ``model``, with its spec resolved once.

    The spec (``hooks``, else the one registered for the model's class) maps modality names to
    forward keywords and reads the output; without any spec the names are the keywords and the
    model must return a tensor. ``extra`` keywords are passed through (e.g. ``mask=``).
    """
    spec = spec_or_none(model, hooks)

    def call(features: Mapping[str, torch.Tensor], **extra: Any) -> torch.Tensor:
        if spec is None:
            return select_output(model(**features, **extra), None)
        return spec.read_output(model(**spec.kwargs(features), **extra))

    return call


def call_backbone(
    model: nn.Module, features: Mapping[str, torch.Tensor], hooks: HookSpec | dict | None = None, **extra: Any
) -> torch.Tensor:
    """Run ``model`` on modality-keyed ``features`` ``{m: (B, T_m, D_m)}``; return its prediction
    ``(B, out_dim)``. See :func:`backbone_caller`; this is the one path every caller uses."""
    return backbone_caller(model, hooks)(features, **extra)


def _coerce(cls, value, key: str = "path"):
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls(**{key: value})
    if isinstance(value, dict):
        return cls(**value)
    raise TypeError(f"expected {cls.__name__}, a path string or a dict, got {type(value).__name__}")


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at ``path`` ('' = model); a wrong path suggests the closest names."""
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    close = difflib.get_close_matches(path, [n for n in modules if n], n=3, cutoff=0.5)
    hint = f"; did you mean {close}?" if close else ""
    raise KeyError(f"hook path {path!r} does not exist in {type(model).__name__}{hint}")


_SPECS: dict[type, Callable[[nn.Module], HookSpec]] = {}


def register_hook_spec(model_cls: type) -> Callable:
    """Decorator: ``@register_hook_spec(MulT)`` over a function ``model -> HookSpec``."""

    def deco(fn: Callable[[nn.Module], HookSpec]) -> Callable[[nn.Module], HookSpec]:
        _SPECS[model_cls] = fn
        return fn

    return deco


def hook_spec_for(model: nn.Module) -> HookSpec:
    """The spec registered for ``type(model)`` (or its nearest registered base class)."""
    for cls in type(model).__mro__:
        if cls in _SPECS:
            return _SPECS[cls](model)
    raise KeyError(
        f"no HookSpec is registered for {type(model).__name__}; pass hooks=HookSpec(...) or a dict "
        f"(registered for: {sorted(c.__name__ for c in _SPECS)})"
    )

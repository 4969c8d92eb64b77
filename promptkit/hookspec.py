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

Paths are those of ``model.named_modules()``; ``""`` is the model itself. Backbones register
their default spec with :func:`register_hook_spec`; any other model passes a spec (or a plain dict
of the same shape) to ``promptkit.wrap(model, hooks=...)``.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

from torch import nn

SeqLayout = Literal["BTD", "BDT", "TBD"]
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

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("a HookSpec needs 'features': modality -> forward argument name")
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
    def from_dict(cls, d: dict[str, Any]) -> "HookSpec":
        allowed = {"features", "signal", "type", "trainable", "encoders"}
        unknown = set(d) - allowed
        if unknown:
            raise KeyError(f"unknown HookSpec key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, model: nn.Module) -> None:
        """Check that every path exists in ``model``; suggest the closest names otherwise."""
        paths = [t.path for t in self.signal.values()] + [t.path for t in self.type] + list(self.trainable)
        for enc in self.encoders.values():
            paths += [enc.output, *enc.params]
        for p in paths:
            resolve_module(model, p)


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

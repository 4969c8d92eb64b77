"""The module targets of a hook spec: where the signal and type prompts attach, each modality's
encoder, and a modality's features read at a module (its feature extractor).

Each target names a module by its ``named_modules()`` path and the axis order of the sequence
there (``B`` batch, ``T`` time, ``D`` features).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

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
class FeatureModule:
    """A modality whose features are the *output of a module* (its feature extractor), not a forward argument.

    For backbones that read a modality as token ids (BERT text) or as a ``(tensor, lengths)`` tuple:
    MMGM reads the available samples' features at ``path`` and a missing sample's output there is
    replaced by the generated one (the zero-fill control zeroes it there). The forward argument
    ``arg`` is passed through with a missing sample's rows zeroed (the first element of a tuple or
    list; further elements such as lengths as given), so its content is never read.

    Attributes:
        path: module path of the extractor.
        layout: axis order of its output sequence: ``"BTD"``, ``"BDT"`` or ``"TBD"``.
        arg: the forward keyword that carries this modality's raw input (token ids, a tuple);
            None: the modality's name.
        index: the element of a tuple/list output that holds the sequence (``0`` for an RNN's
            ``(output, h)``).
        key: the key (or attribute) of a dict / ``ModelOutput`` output that holds it
            (``"last_hidden_state"`` for a BERT).
        width: the feature size D of that sequence; read from the module, else from its output on a
            probe batch, when None.
    """

    path: str
    layout: SeqLayout = "BTD"
    arg: str | None = None
    index: int | None = None
    key: str | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise TypeError(f"feature module path must be a module path string, got {self.path!r}")
        if self.layout not in _LAYOUTS:
            raise ValueError(f"feature module {self.path!r}: layout must be one of {_LAYOUTS}, got {self.layout!r}")
        if self.arg is not None and not (isinstance(self.arg, str) and self.arg.isidentifier()):
            raise ValueError(f"feature module {self.path!r}: arg must be a forward keyword name, got {self.arg!r}")
        if self.index is not None and self.key is not None:
            raise ValueError(f"feature module {self.path!r}: give index or key, not both")
        if self.index is not None and (not isinstance(self.index, int) or isinstance(self.index, bool)):
            raise TypeError(f"feature module {self.path!r}: index must be an int, got {self.index!r}")
        if self.key is not None and not (isinstance(self.key, str) and self.key):
            raise TypeError(f"feature module {self.path!r}: key must be a non-empty string, got {self.key!r}")
        if self.width is not None and (not isinstance(self.width, int) or isinstance(self.width, bool) or self.width < 1):
            raise ValueError(f"feature module {self.path!r}: width must be a positive int, got {self.width!r}")


FeatureEntry = Union[str, FeatureModule]
"""A ``features`` entry: a forward keyword carrying ``(B, T, D)`` floats, or a :class:`FeatureModule`."""


def coerce_feature(modality: str, value: Any) -> FeatureEntry:
    """A ``features`` entry as given: a keyword string, a :class:`FeatureModule` or a dict of its fields."""
    if isinstance(value, str):
        return value
    if isinstance(value, (FeatureModule, dict)):
        return coerce_target(FeatureModule, value)
    raise TypeError(
        f"HookSpec.features[{modality!r}] must be a forward keyword (str) or a module entry "
        f"{{path, layout, arg, index|key, width}}, got {type(value).__name__}"
    )


def coerce_target(cls: type, value: Any, key: str = "path") -> Any:
    """``value`` as a ``cls`` target: itself, a path string or a dict of its fields."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls(**{key: value})
    if isinstance(value, dict):
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise KeyError(f"unknown {cls.__name__} key(s) {unknown} in {value!r}; allowed: {allowed}")
        return cls(**value)
    raise TypeError(f"expected {cls.__name__}, a path string or a dict, got {type(value).__name__}")

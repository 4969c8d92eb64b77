"""Hook points: where a prompter attaches to a backbone, named by module paths.

A :class:`HookSpec` names, for one backbone,

- ``features``: modality → where its features ``(B, T_m, D_m)`` are. A string is the forward
  keyword that carries them as floats; MMGM runs on these before the backbone sees them. A
  :class:`FeatureModule` (a dict ``{path, layout, arg, index|key, width}``) names the module whose
  output is the feature sequence (a BERT over token ids, an RNN over a ``(tensor, lengths)`` tuple):
  MMGM reads the available samples' features there and a missing sample's output there is
  replaced by the generated one; the raw input goes in through the keyword ``arg`` (default: the
  modality's name) with a missing sample's rows zeroed (:mod:`promptkit.feature_points`).
- ``signal``: modality → :class:`SignalTarget`, the module whose *output* is that modality's
  projected sequence; the missing-signal prompts are added to it (paper eq. 3).
- ``type``: list of :class:`TypeTarget`, encoder/fusion modules that receive the missing-type
  prompts as extra tokens on their input sequence (paper eq. 4-5).
- ``trainable``: backbone module paths, or parameter names, that train together with the prompts
  (the output head; a head of bare ``nn.Parameter`` objects is named by its parameters).
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

The targets live in :mod:`promptkit.hook_targets`, the output selector (:class:`CallRef`,
:func:`select_output`) in :mod:`promptkit.hook_output`; every name is importable from here.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .hook_output import (
    CallRef,
    OutputSelector,
    callable_path,
    coerce_output,
    select_output,
)
from .hook_targets import (
    FeatureEntry,
    FeatureModule,
    ModalityEncoder,
    SeqLayout,
    SignalTarget,
    TypeTarget,
    coerce_feature,
    coerce_target,
)

__all__ = [
    "CallRef",
    "FeatureModule",
    "HookSpec",
    "ModalityEncoder",
    "OutputSelector",
    "SeqLayout",
    "SignalTarget",
    "TypeTarget",
    "backbone_caller",
    "call_backbone",
    "callable_path",
    "hook_spec_for",
    "register_hook_spec",
    "resolve_module",
    "select_output",
    "spec_or_none",
    "trainable_parameters",
]


@dataclass
class HookSpec:
    """Where prompts attach to one backbone. See the module docstring."""

    features: dict[str, FeatureEntry]
    signal: dict[str, SignalTarget] = field(default_factory=dict)
    type: list[TypeTarget] = field(default_factory=list)
    trainable: list[str] = field(default_factory=list)
    encoders: dict[str, ModalityEncoder] = field(default_factory=dict)
    output: OutputSelector = None

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("a HookSpec needs 'features': modality -> forward argument name (or module entry)")
        if not isinstance(self.features, Mapping):
            raise TypeError(f"HookSpec.features must map modality -> forward argument, got {type(self.features).__name__}")
        self.features = {m: coerce_feature(m, v) for m, v in self.features.items()}
        args = [self.argument(m) for m in self.features]
        clash = sorted({a for a in args if args.count(a) > 1})
        if clash:
            raise ValueError(f"HookSpec.features passes two modalities through the same forward keyword {clash}")
        self.output = coerce_output(self.output)
        self.signal = {m: coerce_target(SignalTarget, t) for m, t in self.signal.items()}
        self.type = [coerce_target(TypeTarget, t) for t in self.type]
        self.encoders = {m: coerce_target(ModalityEncoder, e, key="output") for m, e in self.encoders.items()}
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

    @property
    def feature_modules(self) -> dict[str, FeatureModule]:
        """The module entries of ``features``: modality → :class:`FeatureModule`, in spec order."""
        return {m: e for m, e in self.features.items() if isinstance(e, FeatureModule)}

    def argument(self, modality: str) -> str:
        """The forward keyword that carries ``modality``'s input (a module entry's ``arg``, default
        the modality's name)."""
        entry = self.features[modality]
        if isinstance(entry, FeatureModule):
            return entry.arg or modality
        return entry

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
        return {self.argument(m): x for m, x in features.items()}

    def read_output(self, out: Any) -> torch.Tensor:
        """The prediction ``(B, out_dim)`` in a model's return value, by :attr:`output`."""
        return select_output(out, self.output)

    def validate(self, model: nn.Module) -> None:
        """Check that every path exists in ``model``; suggest the closest names otherwise."""
        paths = [t.path for t in self.signal.values()] + [t.path for t in self.type]
        for enc in self.encoders.values():
            paths += [enc.output, *enc.params]
        paths += [e.path for e in self.feature_modules.values()]
        for p in paths:
            resolve_module(model, p)
        for p in self.trainable:
            trainable_parameters(model, p)
        self._check_feature_keywords(model)

    def _check_feature_keywords(self, model: nn.Module) -> None:
        """Each ``features`` keyword is one ``model.forward`` takes (any, when it takes ``**kwargs``)."""
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):  # no signature to read (a C extension): nothing to check
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        wrong = {m: self.argument(m) for m in self.features if self.argument(m) not in takes}
        if wrong:
            raise ValueError(
                f"hook spec 'features' {wrong} names keyword(s) {type(model).__name__}.forward does not take; "
                f"it takes {takes}: map each modality to one of them"
            )



def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at ``path`` ('' = model); a wrong path suggests the closest names."""
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    close = difflib.get_close_matches(path, [n for n in modules if n], n=3, cutoff=0.5)
    hint = f"; did you mean {close}?" if close else ""
    raise KeyError(f"hook path {path!r} does not exist in {type(model).__name__}{hint}")


def trainable_parameters(model: nn.Module, path: str) -> dict[str, nn.Parameter]:
    """The parameters a ``trainable`` entry names, by their full names in ``model``: those of the
    module at ``path``, or the one parameter called ``path`` (a head of bare ``nn.Parameter`` objects,
    e.g. LMF's ``fusion_weights``). A wrong path suggests the closest module and parameter names."""
    modules = dict(model.named_modules())
    if path in modules:
        prefix = f"{path}." if path else ""
        return {prefix + n: p for n, p in modules[path].named_parameters()}
    params = dict(model.named_parameters())
    if path in params:
        return {path: params[path]}
    close = difflib.get_close_matches(path, [n for n in [*modules, *params] if n], n=3, cutoff=0.5)
    hint = f"; did you mean {close}?" if close else ""
    raise KeyError(f"trainable {path!r} is neither a module nor a parameter of {type(model).__name__}{hint}")


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


"""The method registry: every method promptkit trains and scores, by name.

One record per method (:class:`MethodSpec`): its name, the label and short name the reports
print, what it trains, where its stage writes, and how it fits. Each method module registers its
records with :func:`register_method` when it is imported; :func:`get_method` and
:func:`list_methods` import the shipped modules first, so every caller - the CLI's help, a recipe's
``[prompt] methods``, the experiment's stage directories, the reports - asks this one place.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..evaluation.protocol import Forward


@dataclass
class TrainedMethod:
    """What a trained method gives the evaluation.

    Attributes:
        name: the method's registry name (``"ms_mean"``, ``"lb"``, ``"lora"``, ...).
        forward: ``(features {m: (B, T_m, D_m)}, mask (B, M) bool) -> (B, out_dim)``.
        trainable_params: parameters the method trained (0 for a substitution at test time).
        modules: the trained modules, by name (what a caller may save or inspect).
        info: anything else worth recording (best epoch, ``trainable``: a prompter's
            :meth:`~promptkit.MissingModalityPrompter.trainable_summary`, fill values' source, ...).
    """

    name: str
    forward: Forward
    trainable_params: int
    modules: dict[str, nn.Module] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


FitFn = Callable[..., TrainedMethod]
"""``fit(recipe, data, backbone_file, out_dir, *, hooks=None, **opts) -> TrainedMethod``."""


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    Attributes:
        name: the registry name a recipe's ``[prompt] methods`` and ``--method`` use.
        label: what tables and plots call it (``"MPLMM prompts"``).
        short: a short name for paired-comparison rows (``"prompts"``).
        trains: what it trains, in words (``"prompts, MMGM and the head"``).
        fit: ``fit(recipe, data, backbone_file, out_dir, *, hooks=None, **opts) -> TrainedMethod``.
        stage_dir: the folder under a run directory its stage writes (default: ``name``).
        reference: the zero-filled reference every run scores; never named in a recipe.
        cggm: the method takes CGGM's gradient modulation (``--cggm``, ``[cggm]``).
        rank: where :func:`list_methods` lists it (lower first).
        default: trained when a recipe names no ``[prompt] methods`` (:func:`default_methods`).
    """

    name: str
    label: str
    short: str
    trains: str
    fit: FitFn
    stage_dir: str = ""
    reference: bool = False
    cggm: bool = False
    rank: int = 100
    default: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"a method name is a Python identifier, got {self.name!r}")
        if not self.stage_dir:
            object.__setattr__(self, "stage_dir", self.name)

    def __call__(self, recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, **opts: Any) -> TrainedMethod:
        return self.fit(recipe, data, backbone_file, out_dir, **opts)


class UnknownMethodError(KeyError):
    """A method name nothing registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, *, label: str, short: str, trains: str, stage_dir: str = "",
                    reference: bool = False, cggm: bool = False, rank: int = 100,
                    default: bool = False) -> Callable[[FitFn], FitFn]:
    """Decorator: register ``fit`` as the method ``name``.

    ``rank`` orders :func:`list_methods` (and so the CLI's help): lower first, then by module and
    registration.

    Example:
        ``@register_method("ms_mean", label="MS: training-mean substitution", short="MS mean",
        trains="nothing")`` over ``def fit(recipe, data, backbone_file, out_dir, *, hooks=None, **opts)``.

    Raises:
        KeyError: ``name`` is registered already.
    """

    def deco(fit: FitFn) -> FitFn:
        if name in _METHODS:
            raise KeyError(f"method {name!r} is registered twice")
        _METHODS[name] = MethodSpec(name, label, short, trains, fit, stage_dir, reference, cggm, rank, default)
        return fit

    return deco


def _load_builtin() -> None:
    """Import every public module of :mod:`promptkit.methods` (each registers its methods)."""
    package = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{__package__}.{info.name}")


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``.

    Raises:
        UnknownMethodError: naming the closest known name and every known one.
    """
    _load_builtin()
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownMethodError(f"unknown method {name!r}{hint} (known: {', '.join(list_methods())})")
    return _METHODS[name]


def list_methods(*, reference: bool = False) -> list[str]:
    """The registered methods a recipe may name, in registration order (``reference=True``: the
    zero-filled reference too, first)."""
    _load_builtin()
    ranked = sorted(enumerate(_METHODS.values()), key=lambda e: (e[1].rank, e[1].fit.__module__, e[0]))
    return [s.name for _, s in ranked if reference or not s.reference]


def default_methods() -> list[str]:
    """What a run trains when neither the caller nor the recipe names methods: the MPLMM prompts."""
    return [n for n in list_methods() if _METHODS[n].default]


def method_label(name: str) -> str:
    """What tables call method ``name``."""
    return get_method(name).label


def method_short(name: str) -> str:
    """The short name of method ``name``."""
    return get_method(name).short

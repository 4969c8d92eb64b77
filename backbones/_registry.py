"""The backbone registry, in timm's manner: one dict from name to constructor.

Three ways a backbone gets in:

- ``@register_backbone`` over a builder function (the shipped backbones, on import of
  :mod:`backbones`);
- an installed package's entry point in the group ``promptkit.backbones`` (see
  :func:`load_entry_points`), loaded once, the first time the registry is asked for a name;
- not registered at all: a ``"package.module:function"`` factory string, built by
  :func:`create_from_factory` (a recipe's ``[backbone] factory``).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import inspect
import sys
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from torch import nn

ENTRY_POINT_GROUP = "promptkit.backbones"
"""The entry-point group an installed package registers its backbones under."""

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}
_entry_points_loaded = False


class BackboneFactoryError(ValueError):
    """A factory string that cannot be imported, is not callable or does not build an ``nn.Module``,
    or a registered builder that returns something other than an ``nn.Module``."""


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name; it builds the backbone from keywords."""
    name = fn.__name__
    if name in _BACKBONES:
        raise ValueError(f"backbone {name!r} is already registered")
    _BACKBONES[name] = fn
    return fn


def load_entry_points(*, force: bool = False) -> list[str]:
    """Load the ``promptkit.backbones`` entry points (once per process); the names loaded now.

    Each entry point's value is either

    - a module (``mypkg.backbones``): importing it registers its backbones
      (``@register_backbone``) and their hook specs (``@register_hook_spec``), or
    - a function (``mypkg.backbones:register``): it is called once with no arguments and registers
      them. A ``@register_backbone`` builder named directly is registered by the import alone and
      is not called.

    An entry point that fails to import or to register is skipped with a warning naming it;
    the other backbones stay usable. That holds for whatever it raises, ``SystemExit`` included
    (a plug-in calling ``sys.exit`` must not end every promptkit command); only
    ``KeyboardInterrupt`` goes through.

    Args:
        force: load them again even if they were loaded already (for tests).
    """
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return []
    _entry_points_loaded = True  # before loading: a plug-in that lists backbones must not recurse
    loaded = []
    for ep in _group_entry_points():
        label = f"{ENTRY_POINT_GROUP} entry point {getattr(ep, 'name', '?')!r} ({getattr(ep, 'value', '?')})"
        try:
            obj = ep.load()
            if isinstance(obj, types.ModuleType) or obj in _BACKBONES.values():
                pass
            elif callable(obj) and not isinstance(obj, type):
                obj()
            else:
                raise TypeError(f"it names a {type(obj).__name__}, not a module or a registration function")
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # a broken plug-in (even one calling sys.exit) must not break the others
            warnings.warn(f"{label} was skipped: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=3)
            continue
        loaded.append(ep.name)
    return loaded


def _group_entry_points() -> list[Any]:
    try:
        return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as e:  # unreadable metadata of some installed distribution
        warnings.warn(f"reading the {ENTRY_POINT_GROUP} entry points failed: {e}", RuntimeWarning, stacklevel=4)
        return []


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, sorted (entry points included)."""
    load_entry_points()
    return sorted(n for n in _BACKBONES if fnmatch.fnmatch(n, pattern))


def is_backbone(name: str) -> bool:
    load_entry_points()
    return name in _BACKBONES


def backbone_builder(name: str) -> Callable[..., nn.Module]:
    """The function registered under ``name``."""
    if not is_backbone(name):
        raise KeyError(f"unknown backbone {name!r}; known backbones: {list_backbones()}")
    return _BACKBONES[name]


def create_backbone(name: str, **cfg: Any) -> nn.Module:
    """Build the registered backbone ``name`` with keyword config ``cfg``.

    Raises:
        KeyError: ``name`` is not registered.
        BackboneFactoryError: the builder returned something that is not an ``nn.Module``
            (naming the backbone, the builder and the type it returned).
    """
    fn = backbone_builder(name)
    model = fn(**cfg)
    if not isinstance(model, nn.Module):
        where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        raise BackboneFactoryError(
            f"backbone {name!r}: its registered builder {where} returned a {type(model).__name__}, "
            "not a torch.nn.Module"
        )
    return model


# --- factories: "package.module:function" ------------------------------------------------------
def parse_factory(ref: str) -> tuple[str, str]:
    """``"pkg.module:build"`` → ``("pkg.module", "build")``; the attribute may be dotted (``Cls.build``)."""
    module, sep, attr = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    parts = module.split(".") + attr.split(".")
    if not sep or not all(p.isidentifier() for p in parts):
        raise BackboneFactoryError(
            f"factory {ref!r}: must have the form 'package.module:function' (a module path, a colon, a callable)"
        )
    return module, attr


def import_factory(ref: str, search: Iterable[str | Path] = ()) -> Callable[..., nn.Module]:
    """The callable a factory string names.

    Args:
        ref: ``"package.module:function"``.
        search: folders to look in when the module is not importable as installed (a recipe's
            own folder); each one that helps is appended to ``sys.path``, so it never shadows an
            installed package.

    Raises:
        BackboneFactoryError: a malformed string, a module that cannot be found or fails to
            import, a missing attribute, or one that is not callable.
    """
    module_name, attr = parse_factory(ref)
    module = _import_module(ref, module_name, [Path(s) for s in search])
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BackboneFactoryError(f"factory {ref!r}: {where!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BackboneFactoryError(f"factory {ref!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    return obj


def _import_module(ref: str, name: str, search: list[Path]) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if not _is_the_module(e, name):  # the module exists but imports something absent
            raise BackboneFactoryError(f"factory {ref!r}: importing module {name!r} failed: {e}") from e
        first = e
    except Exception as e:
        raise BackboneFactoryError(f"factory {ref!r}: importing module {name!r} failed: {type(e).__name__}: {e}") from e
    for folder in search:
        top = name.split(".")[0]
        if not ((folder / f"{top}.py").is_file() or (folder / top).is_dir()):
            continue
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
        importlib.invalidate_caches()
        try:
            return importlib.import_module(name)
        except Exception as e:
            raise BackboneFactoryError(
                f"factory {ref!r}: importing module {name!r} from {folder} failed: {type(e).__name__}: {e}"
            ) from e
    looked = f" nor in {', '.join(str(s) for s in search)}" if search else ""
    raise BackboneFactoryError(
        f"factory {ref!r}: cannot import module {name!r} ({first}); it is not installed or on sys.path{looked}"
    ) from first


def _is_the_module(e: ModuleNotFoundError, name: str) -> bool:
    """Is the missing module ``name`` itself or one of its parent packages?"""
    return e.name is not None and (name == e.name or name.startswith(e.name + "."))


def factory_parameters(fn: Callable[..., Any]) -> set[str]:
    """The keyword names ``fn`` declares (``**kwargs`` declares none; no signature, none)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def config_keywords(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The keywords a builder accepts, name → annotation (``Any`` when unannotated), or None when
    they cannot be known (an open ``**kwargs``).

    A builder that forwards ``**cfg`` to the class it is annotated to return (``def mult(**cfg) ->
    MulT``) accepts that class's constructor keywords.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except Exception:  # unresolvable annotations: names only
        hints = {}
    named = {p.name: hints.get(p.name, Any) for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    named.pop("self", None)
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return named
    target = None if isinstance(fn, type) else typing.get_type_hints(fn).get("return") if hints else None
    if isinstance(target, type):
        inner = config_keywords(target)
        return None if inner is None else {**inner, **named}
    return None


def create_from_factory(ref: str, search: Iterable[str | Path] = (), **cfg: Any) -> nn.Module:
    """Import the factory ``ref`` (see :func:`import_factory`), call it with ``cfg``, check the result.

    Raises:
        BackboneFactoryError: the import fails, the call raises, or it returns no ``nn.Module``.
    """
    return call_factory(import_factory(ref, search), ref, **cfg)


def factory_ref(fn: Callable[..., Any]) -> str:
    """The factory string that names the callable ``fn``: ``"<fn.__module__>:<fn.__qualname__>"``."""
    return f"{getattr(fn, '__module__', None)}:{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def call_factory(fn: Callable[..., Any], ref: str, **cfg: Any) -> nn.Module:
    """Call the factory ``fn`` (named ``ref`` in messages) with ``cfg``; check it built an ``nn.Module``.

    Raises:
        BackboneFactoryError: the call raises, or it returns no ``nn.Module``.
    """
    try:
        model = fn(**cfg)
    except Exception as e:
        raise BackboneFactoryError(
            f"factory {ref!r}: raised {type(e).__name__} when called with keywords {sorted(cfg)}: {e}"
        ) from e
    if not isinstance(model, nn.Module):
        raise BackboneFactoryError(f"factory {ref!r}: returned a {type(model).__name__}, not a torch.nn.Module")
    return model

"""TOML recipes: one file says which backbone, which data and how each stage trains.

A recipe has the sections ``[backbone]``, ``[data]`` (with an optional ``[data.synthetic]``
table of generator options), ``[pretrain]``, ``[prompt]`` (with ``[prompt.prompter]``, the
``PrompterConfig`` keywords), ``[eval]`` and the optional tables ``[cggm]`` and ``[hooks]`` (the
backbone's hook spec, the schema of :meth:`promptkit.hookspec.HookSpec.from_dict`). Every key is
checked where it enters: an unknown key names the section, the allowed keys and the closest match;
a wrong type names the expected one; an unknown backbone lists the registered ones.

Reading, validating and describing a recipe import nothing it names: a ``[backbone] factory`` and
a ``[hooks] output = {call = "module:function"}`` stay strings until a run builds the backbone
(:func:`promptkit.train.pretrain.build_backbone`) or its hooks (:meth:`Recipe.hook_spec`), and
only then is their code imported and run - as with any script you run, run only recipes you trust.
A factory's ``[backbone.config]`` keywords are checked against its signature at that point
(:func:`check_backbone_config`).

Example::

    recipe = load("recipes/mult-synth.toml")
    recipe.pretrain.epochs, recipe.backbone.name, recipe.to_dict()
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .metrics import KINDS, metric_kind

if TYPE_CHECKING:
    from .hookspec import HookSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project runs on 3.11; tomli is the declared fallback
    import tomli as tomllib

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"
"""Where the shipped recipes live in a source checkout."""


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file, the section and the key."""


@dataclass
class BackboneSection:
    """``[backbone]``: a registered backbone, or a factory of one's own, and its keywords.

    ``name`` is a registry name (``promptkit backbones list``); ``factory`` a
    ``"package.module:function"`` string naming a callable that returns an ``nn.Module`` (looked
    up as installed, else in the recipe's own folder). Give one of them; with neither, ``name`` is
    ``"mult"``. The backbone is built with ``[backbone.config]`` as keywords plus ``feature_dims``,
    ``out_dim`` and ``task`` from the data (a factory gets those of the three its signature names).
    A factory's model needs a ``[hooks]`` table unless a hook spec is registered for its class.
    A factory is imported only when a run builds the backbone, never when the recipe is read.
    """

    name: str | None = None
    factory: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name is None and self.factory is None:
            self.name = "mult"

    def identity(self) -> dict[str, str]:
        """What a checkpoint or run record keeps to recognise this backbone:
        ``{"backbone": name}`` or ``{"factory": "package.module:function"}``."""
        return {"factory": self.factory} if self.factory is not None else {"backbone": str(self.name)}

    @property
    def label(self) -> str:
        """The name, or the factory string, for people to read."""
        return self.factory if self.factory is not None else str(self.name)


@dataclass
class DataSection:
    """``[data]``: where the data comes from and which metric family scores it.

    ``source = "synthetic"`` builds the seeded synthetic set from ``seed``, ``aligned``,
    ``sizes`` and the generator options in ``[data.synthetic]``; ``source = "file"`` reads
    ``path`` (or the ``--data`` path given on the command line) in ``format``. ``metric`` is a
    :mod:`promptkit.metrics` kind (it also fixes the task). ``feature_dims``, when given, must
    match the data (checked before training).

    Where the backbone is pre-trained (the paper pre-trains on CMU-MOSEI and adapts on
    CMU-MOSI): ``pretrain_on = "target"`` pre-trains on the same data the prompts adapt on;
    ``"source"`` pre-trains on the synthetic generator's large source domain (``source_sizes``,
    same seed and generator options, complete data) or, for file data, on ``pretrain_path``.
    Source and target must agree on modalities and feature sizes (checked when loaded).

    ``modalities`` selects (and orders) the modalities: for files, the keys to read, extra ones
    included (e.g. ``["text", "audio", "vision", "pose"]``); for synthetic data, the generator's
    modality set. ``max_bytes`` raises or lowers the declared-size limit of a data file
    (:mod:`promptkit.data.limits`).
    """

    source: Literal["synthetic", "file"] = "synthetic"
    path: str | None = None
    format: Literal["auto", "mult", "mmsa", "h5"] = "auto"
    metric: str = "mosi"
    seed: int = 0
    aligned: bool = True
    sizes: dict[str, int] | None = None
    feature_dims: dict[str, int] | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    pretrain_on: Literal["target", "source"] = "target"
    source_sizes: dict[str, int] | None = None
    pretrain_path: str | None = None
    modalities: list[str] | None = None
    max_bytes: int | None = None


@dataclass
class StageSection:
    """How one training stage runs (``[pretrain]``; ``[prompt]`` adds ``eta`` and ``prompter``).

    ``compile`` runs the stage's model under ``torch.compile`` (:mod:`promptkit.compile`):
    ``false`` (default, eager), ``true`` (the ``"inductor"`` backend) or a backend name such as
    ``"inductor"``, ``"aot_eager"`` or ``"eager"``. It changes speed, not what is trained:
    checkpoints keep the eager layout (same keys), and a run may be resumed with it changed.

    ``log_with`` names experiment trackers for the stage (``["csv", "tensorboard"]``; default none,
    see :mod:`promptkit.train.tracking`); it may change on resume. ``batch_size`` is the global
    batch, split across the processes of a distributed run.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "adamw"] = "adam"
    scheduler: Literal["plateau", "cosine", "none"] = "plateau"
    plateau_patience: int = 10
    plateau_factor: float = 0.1
    grad_clip: float | None = 0.8
    early_stop_patience: int | None = None
    seed: int = 0
    compile: bool | str = False
    checkpoint: str | None = None
    log_with: list[str] = field(default_factory=list)


@dataclass
class PromptSection(StageSection):
    """``[prompt]``: the prompt stage; ``eta`` is the training missing rate, ``prompter`` the
    ``PrompterConfig`` keywords (validated by the prompter).

    ``prompt_lr`` is the learning rate of the prompt tensors themselves (P_G, P_NMS/P_MS, P_MT,
    M_m); MMGM's networks and the head train at ``lr``. ``methods`` names what ``promptkit run``
    trains and scores beside the zero-filled reference, on the same masks and data, in this order:
    registered methods of :mod:`promptkit.methods` (``"mplmm"``, the prompts, by default; the
    controls ``"head_only"`` and ``"full_finetune"``; baselines such as ``"ms_mean"``, ``"lb"``,
    ``"lora"``).

    In ``[pretrain]``, ``checkpoint`` names a pre-trained backbone file (``backbone.safetensors``,
    relative paths from the recipe's folder; ``{seed}`` in it is replaced by ``[data] seed``): the
    stage then loads it instead of training (``python -m benchmarks.pretrained`` writes them).
    """

    epochs: int = 30
    eta: float = 0.7
    prompt_lr: float | None = None
    methods: list[str] = field(default_factory=lambda: ["mplmm"])
    prompter: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSection:
    """``[eval]``: missing rates of the test protocol and the seed its masks are drawn from.

    ``max_se`` (percentage points): the standard error a paired accuracy difference on the test
    split should reach; a test split too small for it is warned about before training, with the
    SE it can reach.
    """

    missing_rates: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5, 0.7])
    seed: int = 0
    max_se: float | None = None


@dataclass
class Recipe:
    """A whole recipe. ``source`` is the file it came from (not part of :meth:`to_dict`).

    ``hooks`` is the ``[hooks]`` table as written (validated at load); :meth:`hook_spec` parses it.
    """

    backbone: BackboneSection = field(default_factory=BackboneSection)
    data: DataSection = field(default_factory=DataSection)
    pretrain: StageSection = field(default_factory=StageSection)
    prompt: PromptSection = field(default_factory=PromptSection)
    eval: EvalSection = field(default_factory=EvalSection)
    cggm: dict[str, Any] | None = None
    hooks: dict[str, Any] | None = None
    name: str = ""
    description: str = ""
    source: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def hash(self) -> str:
        """A short stable hash of :meth:`to_dict` (identifies a run's settings)."""
        return config_hash(self.to_dict())

    def hook_spec(self, *, resolve: bool = True) -> HookSpec | None:
        """The ``[hooks]`` table as a :class:`~promptkit.hookspec.HookSpec`, or None (the backbone's
        registered spec is used).

        Args:
            resolve: import an ``output = {call = "module:function"}`` (what a run does: the
                recipe's code runs). False keeps it as a :class:`~promptkit.hookspec.CallRef` and
                imports nothing (reading, validating, describing).

        Raises:
            RecipeError: with ``resolve``, an output function that cannot be imported.
        """
        if self.hooks is None:
            return None
        from .hookspec import HookSpec

        spec = HookSpec.from_dict(copy.deepcopy(self.hooks))
        if not resolve:
            return spec
        try:
            return spec.resolved()
        except ValueError as e:
            raise RecipeError(f"recipe {self.source or '<dict>'}: [hooks] output: {e}") from None

    def folder(self) -> Path | None:
        """The folder of the recipe file, or None for a recipe not read from a file."""
        if self.source and Path(self.source).is_file():
            return Path(self.source).resolve().parent
        return None

    def replace(self, **sections: Any) -> Recipe:
        """A copy with whole sections replaced, e.g. ``recipe.replace(pretrain=new_stage)``."""
        return dataclasses.replace(self, **sections)


_SECTIONS: dict[str, type] = {
    "backbone": BackboneSection,
    "data": DataSection,
    "pretrain": StageSection,
    "prompt": PromptSection,
    "eval": EvalSection,
}
_TOP_LEVEL = {"name": str, "description": str, "cggm": dict[str, Any] | None, "hooks": dict[str, Any] | None}


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


def config_hash(d: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of a JSON-able dict with sorted keys."""
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load(path: str | Path, *, check_backbone: bool = True) -> Recipe:
    """Read and validate a TOML recipe.

    Imports nothing the recipe names (a factory, a hook output function): see the module docstring.

    Args:
        path: a ``.toml`` file, or the name of a shipped recipe (``"mult-synth"``).
        check_backbone: check that ``[backbone] name`` is registered and its ``[backbone.config]``
            keys are its builder's. A ``[backbone] factory`` is checked for its form only
            (``"package.module:function"``) either way; it is imported when a run builds it.

    Raises:
        RecipeError: corrupt TOML (file and line), unknown key, wrong type, unknown backbone,
            a malformed factory string, a ``[hooks]`` table that is not a hook spec.
    """
    p = resolve_recipe_path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"recipe {p} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"recipe {p} is not UTF-8 text: {e}") from None
    if not raw:
        raise RecipeError(
            f"recipe {p} is empty; a recipe names at least its [backbone] and [data] (see recipes/mult-synth.toml)"
        )
    return from_dict(raw, source=str(p), check_backbone=check_backbone)


def resolve_recipe_path(path: str | Path) -> Path:
    """A recipe file by path, or a shipped recipe by name (``mult-synth``)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.parent == Path("."):
        for cand in (RECIPE_DIR / p.name, RECIPE_DIR / f"{p.name}.toml"):
            if cand.is_file():
                return cand
    known = [r.stem for r in list_recipes()]
    raise RecipeError(f"recipe {str(path)!r} not found (not a file, not a shipped recipe; shipped: {known})")


def list_recipes() -> list[Path]:
    """The shipped recipe files, sorted by name."""
    return sorted(RECIPE_DIR.glob("*.toml")) if RECIPE_DIR.is_dir() else []


def from_dict(raw: dict[str, Any], *, source: str = "<dict>", check_backbone: bool = True) -> Recipe:
    """Validate a parsed recipe (a dict as TOML gives it) into a :class:`Recipe`."""
    where = f"recipe {source}"
    allowed = list(_SECTIONS) + list(_TOP_LEVEL)
    for key in raw:
        if key not in allowed:
            raise RecipeError(_unknown(key, "the top level", allowed, where))
    kwargs: dict[str, Any] = {}
    for key, tp in _TOP_LEVEL.items():
        if key in raw:
            kwargs[key] = _check(raw[key], tp, f"{where}: {key}")
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise RecipeError(f"{where}: [{name}] must be a table, got {type(table).__name__}")
        if name == "prompt":
            _refuse_old_method_keys(table, where)
        kwargs[name] = _section(cls, table, name, where)
    recipe = Recipe(**kwargs, source=source)
    _validate_values(recipe, where, check_backbone)
    return recipe


def _refuse_old_method_keys(table: dict[str, Any], where: str) -> None:
    """``[prompt] controls`` and ``baselines`` are refused, naming the one ``methods`` list to write."""
    old = [k for k in ("controls", "baselines") if k in table]
    if not old:
        return
    named = [m for k in old for m in (table[k] if isinstance(table[k], list) else [table[k]])]
    methods = [*table.get("methods", ["mplmm"]), *named]
    written = " and ".join(f"[prompt] {k} = {table[k]!r}" for k in old)
    raise RecipeError(f"{where}: {written}: these keys were replaced by one list of methods; write "
                      f"[prompt] methods = {json.dumps(methods)} instead")


def _section(cls: type, table: dict[str, Any], name: str, where: str):
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise RecipeError(_unknown(key, f"[{name}]", fields, where))
        values[key] = _check(value, hints[key], f"{where}: [{name}] {key}")
    return cls(**values)


def _suggest(key: str, allowed: list[str]) -> str | None:
    """The closest allowed key (difflib), or one whose initials match (``learning_rate`` → ``lr``)."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return close[0]
    initials = "".join(w[0] for w in key.split("_") if w)
    return next((a for a in allowed if len(a) > 1 and a == initials), None)


def _unknown(key: str, section: str, allowed: list[str], where: str) -> str:
    close = _suggest(key, allowed)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"{where}: unknown key {key!r} in {section}{hint} (allowed: {', '.join(allowed)})"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is dict:
        return "a table"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _check(value: Any, tp: Any, what: str) -> Any:
    """``value`` if it fits the type ``tp`` (ints widen to floats), else a RecipeError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        # TOML has no null (an optional key is left out); None comes only from Python dicts.
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, what)
            except RecipeError:
                pass
        finite = "a finite number" if isinstance(value, float) and not math.isfinite(value) else _type_name(tp)
        raise RecipeError(f"{what} must be {finite}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{what} must be {_type_name(tp)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{what} must be a table, got {value!r} ({type(value).__name__})")
        vt = args[1] if args else Any
        return {k: v if vt is Any else _check(v, vt, f"{what}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{what} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
        return [_check(v, args[0], f"{what}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise RecipeError(f"{what} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is float and not math.isfinite(value):
        raise RecipeError(f"{what} must be a finite number, got {value!r}")
    return value


def _validate_backbone(r: Recipe, where: str, check_backbone: bool) -> None:
    """``[backbone]``: a name or a factory (not both), a registered name or a well-formed factory
    string; ``[hooks]`` a hook spec. Imports nothing the recipe names."""
    import backbones

    b = r.backbone
    if b.name is not None and b.factory is not None:
        raise RecipeError(
            f"{where}: [backbone] sets both name {b.name!r} and factory {b.factory!r}; give one: name for a "
            "registered backbone, factory for a model of your own"
        )
    if b.factory is not None:
        try:
            backbones.parse_factory(b.factory)
        except backbones.BackboneFactoryError as e:
            raise RecipeError(f"{where}: [backbone] {e}") from None
    elif check_backbone and not backbones.is_backbone(b.name):
        close = difflib.get_close_matches(b.name, backbones.list_backbones(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RecipeError(
            f"{where}: unknown backbone {b.name!r} in [backbone] name{hint} "
            f"(known backbones: {backbones.list_backbones()}; a model of your own goes in [backbone] factory)"
        )
    if check_backbone and b.factory is None:
        b.config = check_backbone_config(r, backbones.backbone_builder(b.name))
    if r.hooks is not None:
        try:
            r.hook_spec(resolve=False)
        except (KeyError, TypeError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise RecipeError(f"{where}: [hooks]: {msg}") from None


def check_backbone_config(r: Recipe, fn: Callable[..., Any]) -> dict[str, Any]:
    """``[backbone.config]`` checked against ``fn``'s keywords (names) and annotations (values):
    the config with each value as checked (ints widened to floats where a float is annotated).

    Called at load for a registered backbone's builder; for a factory, by the run that imports
    it (:func:`promptkit.train.pretrain.backbone_kwargs`), since reading a recipe imports nothing.

    Raises:
        RecipeError: a key ``fn`` does not take (naming the recipe, the key, the allowed keys and
            the closest one), or a value of the wrong type.
    """
    import backbones

    b, where = r.backbone, f"recipe {r.source or '<dict>'}"
    config = dict(b.config)
    accepted = backbones.config_keywords(fn)
    if accepted is None:  # an open **kwargs: nothing to check against
        return config
    allowed = sorted(set(accepted) - {"feature_dims", "out_dim", "task"})
    for key, value in config.items():
        if key not in accepted:
            raise RecipeError(_unknown(key, f"[backbone.config] of {b.label}", allowed, where))
        try:
            config[key] = _check(value, accepted[key], f"{where}: [backbone.config] {key}")
        except (TypeError, AttributeError):  # an annotation _check cannot read (e.g. a Protocol): unchecked
            pass
    return config


def _validate_values(r: Recipe, where: str, check_backbone: bool) -> None:
    """Range checks that a type alone cannot express."""
    _validate_backbone(r, where, check_backbone)
    for key in ("feature_dims", "out_dim", "task"):
        if key in r.backbone.config:
            raise RecipeError(
                f"{where}: [backbone.config] must not set {key!r}: it comes from the data"
                + ("; put expected sizes in [data] feature_dims" if key == "feature_dims" else "")
            )
    if r.data.metric not in KINDS:
        close = difflib.get_close_matches(r.data.metric, KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RecipeError(f"{where}: [data] metric {r.data.metric!r} is unknown{hint} (known: {', '.join(KINDS)})")
    if r.data.source == "synthetic" and r.data.path is not None:
        raise RecipeError(f"{where}: [data] path {r.data.path!r} is set but source is 'synthetic'; use source = 'file'")
    if r.data.source == "file" and r.data.synthetic:
        raise RecipeError(f"{where}: [data.synthetic] options are set but source is 'file'; remove them")
    if r.data.modalities is not None and "modalities" in r.data.synthetic:
        raise RecipeError(f"{where}: [data] modalities and [data.synthetic] modalities are both set; keep one")
    if r.data.modalities is not None and (len(r.data.modalities) < 1 or len(set(r.data.modalities)) != len(r.data.modalities)):
        raise RecipeError(f"{where}: [data] modalities must list at least one modality, none twice; got {r.data.modalities}")
    if r.data.max_bytes is not None and r.data.source != "file":
        raise RecipeError(f"{where}: [data] max_bytes limits data files; source is 'synthetic'")
    if r.data.max_bytes is not None and r.data.max_bytes < 1:
        raise RecipeError(f"{where}: [data] max_bytes must be >= 1, got {r.data.max_bytes}")
    if r.data.source == "file" and r.data.sizes is not None:
        raise RecipeError(f"{where}: [data] sizes applies to synthetic data only; source is 'file'")
    for name in ("pretrain", "prompt"):
        s: StageSection = getattr(r, name)
        for key in ("epochs", "batch_size"):
            if getattr(s, key) < 1:
                raise RecipeError(f"{where}: [{name}] {key} must be >= 1, got {getattr(s, key)}")
        if s.lr <= 0:
            raise RecipeError(f"{where}: [{name}] lr must be > 0, got {s.lr}")
        if s.weight_decay < 0:
            raise RecipeError(f"{where}: [{name}] weight_decay must be >= 0, got {s.weight_decay}")
        if s.grad_clip is not None and s.grad_clip <= 0:
            raise RecipeError(f"{where}: [{name}] grad_clip must be > 0 (leave it out for none), got {s.grad_clip}")
        if s.early_stop_patience is not None and s.early_stop_patience < 1:
            raise RecipeError(f"{where}: [{name}] early_stop_patience must be >= 1, got {s.early_stop_patience}")
        if not 0 < s.plateau_factor < 1:
            raise RecipeError(f"{where}: [{name}] plateau_factor must lie in (0, 1), got {s.plateau_factor}")
        check_compile_backend(s.compile, f"{where}: [{name}] compile")
        from .train.tracking import check_log_with

        try:
            check_log_with(s.log_with)
        except ValueError as e:
            raise RecipeError(f"{where}: [{name}] log_with: {e}") from None
    if r.prompt.prompt_lr is not None and r.prompt.prompt_lr <= 0:
        raise RecipeError(f"{where}: [prompt] prompt_lr must be > 0 (leave it out to use lr), got {r.prompt.prompt_lr}")
    _validate_methods(r.prompt.methods, where)
    if r.eval.max_se is not None and r.eval.max_se <= 0:
        raise RecipeError(f"{where}: [eval] max_se must be > 0 percentage points, got {r.eval.max_se}")
    if r.prompt.checkpoint is not None:
        raise RecipeError(f"{where}: [prompt] checkpoint is not used; a pre-trained backbone goes in [pretrain] checkpoint")
    d = r.data
    if d.source == "synthetic" and d.pretrain_path is not None:
        raise RecipeError(f"{where}: [data] pretrain_path is for file data; synthetic data pre-trains on its source "
                          "domain with pretrain_on = 'source'")
    if d.source_sizes is not None and not (d.source == "synthetic" and d.pretrain_on == "source"):
        raise RecipeError(f"{where}: [data] source_sizes applies only to synthetic data with pretrain_on = 'source'")
    if d.source == "file" and d.pretrain_on == "source" and d.pretrain_path is None:
        raise RecipeError(f"{where}: [data] pretrain_on = 'source' with file data needs pretrain_path (e.g. CMU-MOSEI)")
    if not 0.0 <= r.prompt.eta <= 1.0:
        raise RecipeError(f"{where}: [prompt] eta must lie in [0, 1], got {r.prompt.eta}")
    bad = [m for m in r.eval.missing_rates if not 0.0 <= m <= 1.0]
    if bad:
        raise RecipeError(f"{where}: [eval] missing_rates must lie in [0, 1], got {bad}")
    _validate_passthrough(r, where)
    for key in ("sizes", "source_sizes"):
        sizes = getattr(r.data, key)
        unknown = set(sizes or {}) - {"train", "valid", "test"}
        if unknown:
            raise RecipeError(f"{where}: [data] {key} has unknown split(s) {sorted(unknown)}; allowed: train, valid, test")


def _validate_methods(methods: list[str], where: str) -> None:
    """``[prompt] methods``: registered methods, at least one, none twice."""
    from .methods import list_methods
    from .train.methods import CONTROLS, PROMPTS

    known = [PROMPTS, *CONTROLS, *list_methods()]
    for m in methods:
        if m not in known:
            close = difflib.get_close_matches(m, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RecipeError(f"{where}: [prompt] methods has unknown method {m!r}{hint} (known: {', '.join(known)})")
    if not methods or len(set(methods)) != len(methods):
        raise RecipeError(f"{where}: [prompt] methods must list at least one method, none twice; got {methods}")


def _validate_passthrough(r: Recipe, where: str) -> None:
    """Check ``[prompt.prompter]`` and ``[cggm]`` with their owners' configs, at load time."""
    from .cggm import CGGMConfig
    from .prompter import PrompterConfig

    for section, cls, table in (("[prompt.prompter]", PrompterConfig, r.prompt.prompter), ("[cggm]", CGGMConfig, r.cggm)):
        if table is None:
            continue
        try:
            cls.from_dict(dict(table))
        except (KeyError, TypeError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise RecipeError(f"{where}: {section}: {msg}") from None


def load_recipe_data(recipe: Recipe, data_path: str | Path | None = None, **synthetic: Any):
    """The ``DataBundle`` a recipe's ``[data]`` section describes, checked against its metric.

    Args:
        data_path: a data file that replaces ``[data] path`` (the CLI's ``--data``); it turns a
            synthetic recipe into a file one.
        **synthetic: generator options that override ``[data.synthetic]`` (e.g.
            ``domain="source"`` for the pre-training domain); synthetic data only.
    """
    from .data import load_data

    d, where = recipe.data, f"recipe {recipe.source or '<dict>'}"
    if data_path is None and d.source == "synthetic":
        options = {"seed": d.seed, "aligned": d.aligned, "sizes": d.sizes, **d.synthetic, **synthetic}
        if d.modalities is not None:
            options["modalities"] = list(d.modalities)
        data = load_data("synthetic", **options)
    else:
        if synthetic:
            raise ValueError(f"synthetic generator options {sorted(synthetic)} were given for file data")
        path = data_path if data_path is not None else d.path
        if path is None:
            raise RecipeError(f"{where}: [data] source is 'file' but no path is given; pass --data PATH or set [data] path")
        task = metric_kind(d.metric).task
        data = load_data(str(path), format=d.format, task=task, **_file_options(d))
    want = metric_kind(d.metric).task
    out_dim = metric_kind(d.metric).out_dim
    if data.task != want or (out_dim is not None and data.out_dim != out_dim):
        raise RecipeError(
            f"{where}: [data] metric {d.metric!r} needs {want} data"
            + (f" with out_dim {out_dim}" if out_dim is not None else "")
            + f", but {data.description} is {data.task} with out_dim {data.out_dim}"
        )
    return data


def _file_options(d: DataSection) -> dict[str, Any]:
    """``[data] modalities`` and ``max_bytes`` as keywords of a file loader (left out when unset)."""
    out: dict[str, Any] = {}
    if d.modalities is not None:
        out["modalities"] = list(d.modalities)
    if d.max_bytes is not None:
        out["max_bytes"] = int(d.max_bytes)
    return out


def load_pretrain_data(recipe: Recipe, target: Any, data_path: str | Path | None = None):
    """The data the backbone pre-trains on: ``target`` itself, or the source domain (see
    :class:`DataSection`), checked to agree with ``target`` on modalities and feature sizes.

    Raises:
        RecipeError: source and target disagree on the modality order or a feature size.
    """
    from .data import load_data

    d, where = recipe.data, f"recipe {recipe.source or '<dict>'}"
    if d.pretrain_on == "target":
        return target
    if d.source == "synthetic" and data_path is None:
        source = load_recipe_data(recipe, None, domain="source", sizes=d.source_sizes)
    else:
        if d.pretrain_path is None:
            raise RecipeError(f"{where}: [data] pretrain_on = 'source' with file data needs [data] pretrain_path")
        task = metric_kind(d.metric).task
        source = load_data(str(d.pretrain_path), format=d.format, task=task, **_file_options(d))
    if tuple(source.modalities) != tuple(target.modalities):
        raise RecipeError(
            f"{where}: the pre-training data ({source.description}) has modalities {list(source.modalities)}, "
            f"the target ({target.description}) {list(target.modalities)}; they must be the same, in the same order"
        )
    if dict(source.feature_dims) != dict(target.feature_dims):
        raise RecipeError(
            f"{where}: the pre-training data ({source.description}) has feature_dims {dict(source.feature_dims)}, "
            f"the target ({target.description}) {dict(target.feature_dims)}; a backbone fits only one"
        )
    if source.task != target.task or source.out_dim != target.out_dim:
        raise RecipeError(
            f"{where}: the pre-training data is {source.task} with out_dim {source.out_dim}, the target "
            f"{target.task} with out_dim {target.out_dim}"
        )
    return source


def resolve_recipe_file(recipe: Recipe, path: str) -> Path:
    """A path a recipe names (e.g. ``[pretrain] checkpoint``): absolute, else from the recipe's folder,
    else from the working directory."""
    p = Path(path)
    if p.is_absolute():
        return p
    if recipe.source and Path(recipe.source).is_file():
        beside = Path(recipe.source).resolve().parent / p
        if beside.exists():
            return beside
    return p

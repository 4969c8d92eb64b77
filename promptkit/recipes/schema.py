"""The sections of a recipe, each a dataclass that checks itself when it is made.

``[backbone]`` (:class:`BackboneSection`), ``[data]`` (:class:`DataSection`), ``[pretrain]``
(:class:`StageSection`), ``[prompt]`` (:class:`PromptSection`) and ``[eval]``
(:class:`EvalSection`). Each ``__post_init__`` checks the types (TOML's: ints widen to floats,
floats are finite), the ranges and the keys that contradict each other within the section, so a
section made by :func:`dataclasses.replace` is checked as one read from a file. An error is a
``ValueError`` naming the key (``"lr must be > 0, got 0.0"``); the reader
(:func:`promptkit.recipes.from_dict`) adds the file and the table. What needs more than one section,
or a registry (backbones, methods), is :mod:`promptkit.recipes.validate`'s.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from ..metrics import KINDS, metric_kind
from ..trackers import check_log_with
from .torch_compile import check_compile_backend
from .typecheck import check_fields

SPLITS = ("train", "valid", "test")
"""The split names ``[data] sizes`` and ``source_sizes`` may use."""


@dataclass
class BackboneSection:
    """``[backbone]``: a registered backbone, or a factory of one's own, and its keywords.

    ``name`` is a registry name (``promptkit backbones list``); ``factory`` a
    ``"package.module:function"`` string naming a callable that returns an ``nn.Module`` (looked
    up as installed, else in the recipe's own folder). Give one of them; with neither, ``name`` is
    ``"mult"``. The backbone is built with ``[backbone.config]`` as keywords plus ``feature_dims``,
    ``out_dim`` and ``task`` from the data (a factory gets those of the three its signature names).
    A factory's model needs a ``[hooks]`` table unless a hook spec is registered for its class.
    A factory is imported only when a run builds the backbone, never when the recipe is read; here
    only its form is checked.
    """

    name: str | None = None
    factory: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.name is not None and self.factory is not None:
            raise ValueError(
                f"sets both name {self.name!r} and factory {self.factory!r}; give one: name for a "
                "registered backbone, factory for a model of your own"
            )
        if self.factory is not None:
            import backbones

            try:
                backbones.parse_factory(self.factory)
            except backbones.BackboneFactoryError as e:
                raise ValueError(str(e)) from None
        elif self.name is None:
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
    ``sizes`` and the generator options in ``[data.synthetic]`` (its seed is ``[data] seed``, the
    one ``[pretrain] checkpoint``'s ``{seed}`` names: ``seed`` is refused there); ``source =
    "file"`` reads ``path`` (or the ``--data`` path given on the command line) in ``format``.
    ``metric`` is a :mod:`promptkit.metrics` kind (it also fixes the task). ``feature_dims``, when
    given, must match the data (checked before training).

    Where the backbone is pre-trained (the paper pre-trains on CMU-MOSEI and adapts on
    CMU-MOSI): ``pretrain_on = "target"`` pre-trains on the same data the prompts adapt on;
    ``"source"`` pre-trains on the synthetic generator's large source domain (``source_sizes``,
    same seed and generator options, complete data) or, for file data, on ``pretrain_path``.
    Source and target must agree on modalities and feature sizes (checked when loaded).

    ``modalities`` selects (and orders) the modalities: for files, the keys to read, extra ones
    included (e.g. ``["text", "audio", "vision", "pose"]``); for synthetic data, the generator's
    modality set. ``max_bytes`` raises or lowers the declared-size limit of a data file
    (:mod:`promptkit.data.limits`).

    Text as token ids (for a backbone whose ``[backbone.config] text_encoder`` reads them):
    ``[data.synthetic] text = "tokens"`` (and ``codebook_size``, default 256) for the generator;
    ``text = "tokens"`` here (and ``vocab_size``, the tokenizer's, e.g. 30522) for an MMSA pickle's
    ``text_bert``.
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
    text: Literal["features", "tokens"] = "features"
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        self._check_text()
        if self.metric not in KINDS:
            close = difflib.get_close_matches(self.metric, KINDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"metric {self.metric!r} is unknown{hint} (known: {', '.join(KINDS)})")
        self._check_source()
        self._check_modalities()
        self._check_transfer()
        for key in ("sizes", "source_sizes"):
            unknown = set(getattr(self, key) or {}) - set(SPLITS)
            if unknown:
                raise ValueError(f"{key} has unknown split(s) {sorted(unknown)}; allowed: {', '.join(SPLITS)}")

    def _check_source(self) -> None:
        """The keys of one source are not set for the other; the generator's seed is ``seed``."""
        if self.source == "synthetic":
            if self.path is not None:
                raise ValueError(f"path {self.path!r} is set but source is 'synthetic'; use source = 'file'")
            if self.max_bytes is not None:
                raise ValueError("max_bytes limits data files; source is 'synthetic'")
        else:
            if self.synthetic:
                raise ValueError("[data.synthetic] options are set but source is 'file'; remove them")
            if self.sizes is not None:
                raise ValueError("sizes applies to synthetic data only; source is 'file'")
        if "seed" in self.synthetic:
            raise ValueError(
                f"[data.synthetic] seed = {self.synthetic['seed']!r} is refused: the generator's seed is "
                "[data] seed (the one [pretrain] checkpoint's {seed} names); set [data] seed instead"
            )
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")

    def _check_text(self) -> None:
        """Token-id text: ``[data.synthetic] text`` for the generator, ``[data] text`` for files."""
        if self.source == "synthetic" and (self.text != "features" or self.vocab_size is not None):
            raise ValueError("text and vocab_size apply to file data; for the generator set [data.synthetic] "
                             "text = \"tokens\" (and codebook_size)")
        if self.vocab_size is not None and (self.text != "tokens" or self.vocab_size < 2):
            raise ValueError(f"vocab_size = {self.vocab_size} needs text = \"tokens\" and a value >= 2")
        self._check_world()
        text = self.synthetic.get("text", "features")
        if text not in ("features", "tokens"):
            raise ValueError(f"[data.synthetic] text must be \"features\" or \"tokens\", got {text!r}")
        if "codebook_size" in self.synthetic:
            k = self.synthetic["codebook_size"]
            if text != "tokens":
                raise ValueError("[data.synthetic] codebook_size applies to text = \"tokens\" only")
            if isinstance(k, bool) or not isinstance(k, int) or k < 2:
                raise ValueError(f"[data.synthetic] codebook_size must be an int >= 2, got {k!r}")

    def _check_world(self) -> None:
        """``[data.synthetic] world``: a known world, scored by its own metric kind."""
        from ..data.synthetic.worlds import WORLD_METRICS, WORLDS

        world = self.synthetic.get("world")
        if world is None:
            return
        if world not in WORLDS:
            raise ValueError(f"[data.synthetic] world must be one of {list(WORLDS)}, got {world!r}")
        if self.metric not in WORLD_METRICS[world]:
            raise ValueError(f"[data.synthetic] world = {world!r} is scored with [data] metric = "
                             f"{' or '.join(repr(k) for k in WORLD_METRICS[world])}, got {self.metric!r}")
        if self.pretrain_on == "source" and metric_kind(self.metric).task != "regression":
            raise ValueError(f"pretrain_on = 'source' pre-trains on the MOSEI world (regression), which [data] metric = "
                             f"{self.metric!r} cannot score; pre-train it once (recipes/mult-synth.toml) and name the "
                             "file in [pretrain] checkpoint")

    def _check_modalities(self) -> None:
        if self.modalities is None:
            return
        if "modalities" in self.synthetic:
            raise ValueError("modalities and [data.synthetic] modalities are both set; keep one")
        if len(self.modalities) < 1 or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must list at least one modality, none twice; got {self.modalities}")

    def _check_transfer(self) -> None:
        """``pretrain_on``, ``source_sizes`` and ``pretrain_path`` fit the source."""
        if self.source == "synthetic" and self.pretrain_path is not None:
            raise ValueError("pretrain_path is for file data; synthetic data pre-trains on its source "
                             "domain with pretrain_on = 'source'")
        if self.source_sizes is not None and not (self.source == "synthetic" and self.pretrain_on == "source"):
            raise ValueError("source_sizes applies only to synthetic data with pretrain_on = 'source'")
        if self.source == "file" and self.pretrain_on == "source" and self.pretrain_path is None:
            raise ValueError("pretrain_on = 'source' with file data needs pretrain_path (e.g. CMU-MOSEI)")


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

    def __post_init__(self) -> None:
        check_fields(self)
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 (leave it out for none), got {self.grad_clip}")
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            raise ValueError(f"early_stop_patience must be >= 1, got {self.early_stop_patience}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must lie in (0, 1), got {self.plateau_factor}")
        check_compile_backend(self.compile, "compile")
        try:
            check_log_with(self.log_with)
        except ValueError as e:
            raise ValueError(f"log_with: {e}") from None


@dataclass
class PromptSection(StageSection):
    """``[prompt]``: the prompt stage; ``eta`` is the training missing rate, ``prompter`` the
    ``PrompterConfig`` keywords (validated by the prompter).

    ``prompt_lr`` is the learning rate of the prompt tensors themselves (P_G, P_NMS/P_MS, P_MT,
    M_m); MMGM's networks and the head train at ``lr``. ``methods`` names what ``promptkit run``
    trains and scores beside the zero-filled reference, on the same masks and data, in this order:
    registered methods of :mod:`promptkit.methods` (left out: the registry's default, the MPLMM
    prompts; the controls ``"head_only"`` and ``"full_finetune"``; baselines such as ``"ms_mean"``, ``"lb"``,
    ``"lora"``). Here the list is checked for its form; the names, against the registry, when the
    recipe is read (:mod:`promptkit.recipes.validate`).

    In ``[pretrain]``, ``checkpoint`` names a pre-trained backbone file (``backbone.safetensors``,
    relative paths from the recipe's folder; ``{seed}`` in it is replaced by ``[data] seed``): the
    stage then loads it instead of training (``python -m benchmarks.pretrained`` writes them).

    ``reinit_projections`` (cross-feature-space transfer, the paper's IEMOCAP and CH-SIMS design):
    the pre-trained backbone's input projections are re-initialised for the target's feature sizes
    (its head's output layer too where the task changes it) and trained with the head on complete
    target data (the transfer stage), every other tensor frozen and bit-identical; every method then
    starts from that backbone, and those that freeze it train the projections with their own set.
    """

    epochs: int = 30
    eta: float = 0.7
    prompt_lr: float | None = None
    methods: list[str] | None = None
    prompter: dict[str, Any] = field(default_factory=dict)
    reinit_projections: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_lr is not None and self.prompt_lr <= 0:
            raise ValueError(f"prompt_lr must be > 0 (leave it out to use lr), got {self.prompt_lr}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta}")
        if self.methods is not None and (not self.methods or len(set(self.methods)) != len(self.methods)):
            raise ValueError(f"methods must list at least one method, none twice; got {self.methods}")


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

    def __post_init__(self) -> None:
        check_fields(self)
        if self.max_se is not None and self.max_se <= 0:
            raise ValueError(f"max_se must be > 0 percentage points, got {self.max_se}")
        bad = [m for m in self.missing_rates if not 0.0 <= m <= 1.0]
        if bad:
            raise ValueError(f"missing_rates must lie in [0, 1], got {bad}")

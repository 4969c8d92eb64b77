"""CGGM: classifier-guided gradient modulation (Guo et al., NeurIPS 2024) as a training plug-in.

Per modality m a small classifier f_m reads the *detached* output of that modality's encoder
(``HookSpec.encoders[m]``) and trains with its own Adam on the task loss. Each training step::

    ε_m(t) = batch accuracy of f_m (its predictions before this step's update)
    Δ_m    = ε_m(t) − ε_m(t−1),      S = Σ_j Δ_j
    B_m    = (S − Δ_m) / S                      a modality that improves faster is slowed down
    grad θ_m ← ρ·B_m · grad θ_m                 after backward, before clipping and the step
    L_gm   = (Σ_m |B_m| − Σ_m B_m·cos_m) / M,   loss += λ·L_gm  (B_m constants)

cos_m is the cosine similarity between f_m's output-layer weight and the fused head's output-layer
weight (the released code's stand-in for the two gradient directions). θ_m are the parameters of
the modules in ``encoders[m].params`` (only those with ``requires_grad``) plus, in the prompt
stage, ``extra_params[m]`` (the prompter's per-modality prompts and MMGM parameters).

Where this differs from the authors' code (github zrguo/CGGM), on purpose:

- **S ≈ 0 guard.** The released code divides by ``S + 1e-8``: when the accuracies do not move
  (S = 0 happens all the time, batch accuracies are multiples of 1/n) B is ±1e6 or more. Here
  ``|S| < eps`` gives B_m = 1 for every modality for that step (no modality is preferred), as
  does the first step (no ε(t−1) yet; the released code starts from ε = 0, so its first Δ is
  the whole accuracy) and the optional ``warmup_steps``.
- **Bound.** B is clipped to ``[0, b_max]``. A negative factor would turn the descent step of a
  modality's encoder into an ascent step (un-learning), and would flip the sign of that
  modality's term in L_gm (rewarding misalignment); the method's intent is to slow a dominant
  modality, so the floor is 0 (it pauses for the step). ``b_max`` caps the gain at ρ·b_max when
  S is small but above eps. With B in [0, b_max], L_gm = Σ B_m (1 − cos_m) / M ≥ 0.
- **Timing.** L_gm uses this step's B and weights; the released code adds the previous step's.
- **Accuracy.** Regression: sign accuracy on non-zero labels (the released code's
  ``exclude_zero`` flag is a no-op, zeros count as negatives). Classification: argmax accuracy;
  ``(B, K)`` labels with ``(B, K·C)`` logits are K tasks of C classes (IEMOCAP: K=4, C=2).
- **Missing modalities.** With a batch ``"mask"`` (B, M) (columns in spec order), f_m trains and
  is scored only on samples where m is present; a modality with nothing to score keeps Δ_m = 0.
- **Distributed.** Hit counts and classifier gradients are summed across processes, so every
  process computes the same B and keeps the same classifiers.
- **Widths.** The classifier's hidden width defaults to the head's input width, so the two
  output-layer weights have the same shape (in the released code both are the model width,
  40 on MOSI). Weights of different shapes have no cosine; an explicit ``classifier_hidden``
  that differs from the head's input width is an error when ``lam > 0``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import distributed as dist
from torch import nn

from .checkpoint import optimizer_from_flat, optimizer_to_flat
from .hookspec import HookSpec, hook_spec_for, resolve_module
from .train.plugins import TrainPlugin

_WIDTH_ATTRS = ("width", "embed_dim", "d_model", "hidden_size", "out_channels", "out_features", "out_dim")


# --- configuration ---------------------------------------------------------------------
@dataclass
class CGGMConfig:
    """Hyper-parameters of CGGM (defaults: the paper's MOSI settings)."""

    rho: float = field(default=1.3, metadata={"help": "ρ: global gain on the modulated gradients (paper: 1.3)."})
    lam: float = field(default=0.2, metadata={"help": "λ: weight of the direction term L_gm (0 switches it off)."})
    classifier_lr: float = field(default=5e-4, metadata={"help": "Adam learning rate of the unimodal classifiers."})
    classifier_hidden: int | None = field(
        default=None,
        metadata={
            "help": "Hidden width of each classifier (Linear→ReLU→Linear). None: the head's input width, "
            "so L_gm can compare output layers (the paper's 40 is its model width)."
        },
    )
    eps: float = field(
        default=1e-6,
        metadata={"help": "Guard: |S| below this gives B = 1 for the step (S is a sum of multiples of 1/n)."},
    )
    b_max: float = field(default=2.0, metadata={"help": "Upper bound on B (B is clipped to [0, b_max]); ≥ 1."})
    task: str | None = field(
        default=None, metadata={"help": "'regression' or 'classification'; None reads the backbone's `task`."}
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "Steps at the start with B = 1 while the classifiers learn (ε still tracked)."}
    )
    head: str | None = field(
        default=None,
        metadata={
            "help": "Module path of the fused head's final nn.Linear; None: the last nn.Linear in HookSpec.trainable."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the classifiers' init (the global RNG is left untouched)."})

    def __post_init__(self) -> None:
        for name, low in (("rho", 0.0), ("classifier_lr", 0.0), ("eps", 0.0)):
            value = getattr(self, name)
            if not _is_number(value) or not value > low:
                raise ValueError(f"CGGMConfig.{name} must be a number > {low}, got {value!r}")
        if not _is_number(self.lam) or self.lam < 0:
            raise ValueError(f"CGGMConfig.lam must be a number ≥ 0, got {self.lam!r}")
        if not _is_number(self.b_max) or self.b_max < 1:
            raise ValueError(
                f"CGGMConfig.b_max must be ≥ 1 (the guard's B = 1 must lie inside the bound), got {self.b_max!r}"
            )
        if self.classifier_hidden is not None and (not _is_int(self.classifier_hidden) or self.classifier_hidden < 1):
            raise ValueError(
                f"CGGMConfig.classifier_hidden must be a positive int or None, got {self.classifier_hidden!r}"
            )
        if self.task not in (None, "regression", "classification"):
            raise ValueError(f"CGGMConfig.task must be 'regression', 'classification' or None, got {self.task!r}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"CGGMConfig.warmup_steps must be an int ≥ 0, got {self.warmup_steps!r}")
        if self.head is not None and not isinstance(self.head, str):
            raise TypeError(f"CGGMConfig.head must be a module path string or None, got {type(self.head).__name__}")
        if not _is_int(self.seed):
            raise TypeError(f"CGGMConfig.seed must be an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CGGMConfig":
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise KeyError(f"unknown CGGM key(s) {unknown}; allowed keys: {allowed}")
        return cls(**d)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- pure functions ----------------------------------------------------------------------
def modulation_coefficients(deltas: Sequence[float], eps: float, b_max: float) -> tuple[list[float], bool]:
    """B_m = (S − Δ_m) / S clipped to [0, b_max]; all 1 when |S| < eps.

    Returns:
        (B per modality, whether the guard fired).
    """
    s = float(sum(deltas))
    if not math.isfinite(s) or abs(s) < eps:
        return [1.0] * len(deltas), True
    return [min(max(0.0, (s - d) / s), b_max) for d in deltas], False


def direction_loss(coefficients: Sequence[float], cosines: torch.Tensor) -> torch.Tensor:
    """L_gm = (Σ|B_m| − Σ B_m·cos_m) / M; B are constants, ``cosines`` is ``(M,)``."""
    b = torch.tensor(list(coefficients), dtype=cosines.dtype, device=cosines.device)
    if b.shape != cosines.shape:
        raise ValueError(f"{len(b)} coefficients for {tuple(cosines.shape)} cosines")
    return (b.abs().sum() - (b * cosines).sum()) / len(b)


def unimodal_stats(
    logits: torch.Tensor, labels: torch.Tensor, task: str, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Task loss and hit counts of one classifier on one batch.

    Args:
        logits: ``(B, P)``.
        labels: regression ``(B,)``/``(B, P)`` float; classification ``(B,)`` class ids with
            ``P`` classes, or ``(B, K)`` with ``P = K·C`` (K tasks of C classes, logits grouped by task).
        task: ``"regression"`` (L1; sign accuracy on non-zero labels) or ``"classification"`` (CE).
        keep: ``(B,)`` bool, the samples to use (None: all).

    Returns:
        (mean loss over kept rows or None when none is kept, hits, counted) — the last two 0-dim float.
    """
    b = logits.shape[0]
    if logits.dim() != 2 or labels.shape[0] != b:
        raise ValueError(
            f"logits must be (B, P) and labels (B, ...) with the same B; "
            f"got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if task == "classification":
        if labels.is_floating_point():
            raise TypeError(f"classification labels must be integer class ids, got dtype {labels.dtype}")
        k = labels[0].numel() if labels.dim() > 1 else 1
        if logits.shape[1] % k:
            raise ValueError(f"{k} label(s) per sample need logits (B, {k}·C), got {tuple(logits.shape)}")
        rows = rearrange(logits, "b (k c) -> (b k) c", k=k)
        y = labels.reshape(-1).long()
    elif task == "regression":
        k = logits.shape[1]
        if labels.numel() != b * k:
            raise ValueError(f"regression labels {tuple(labels.shape)} do not match predictions {tuple(logits.shape)}")
        rows, y = logits.reshape(-1), labels.reshape(-1).to(logits.dtype)
    else:
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    kept = torch.ones(b * k, dtype=torch.bool, device=logits.device)
    if keep is not None:
        kept = keep.to(logits.device).bool().repeat_interleave(k)
    if task == "classification":
        loss = F.cross_entropy(rows[kept], y[kept]) if kept.any() else None
        hit, counted = rows.argmax(-1) == y, kept
    else:
        loss = F.l1_loss(rows[kept], y[kept]) if kept.any() else None
        hit, counted = (rows > 0) == (y > 0), kept & (y != 0)
    return loss, (hit & counted).sum().float(), counted.sum().float()


def read_out(x: Any, layout: str, path: str = "?") -> torch.Tensor:
    """An encoder's output as ``(B, D)``: the vector itself or the last step of a sequence.

    Tuple outputs (RNNs, attention blocks) are read from their first element.
    """
    if isinstance(x, (tuple, list)):
        x = x[0]
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"encoder output {path!r} is a {type(x).__name__}, expected a tensor")
    want = 2 if layout == "BD" else 3
    if x.dim() != want:
        raise ValueError(f"encoder output {path!r} has shape {tuple(x.shape)}; layout {layout!r} expects {want} dims")
    if layout == "BD":
        return x
    return {"BTD": x[:, -1], "BDT": x[:, :, -1], "TBD": x[-1]}[layout]


# --- history -------------------------------------------------------------------------------
@dataclass
class CGGMHistory:
    """Per-step record for plots: ``B[m]``, ``acc[m]`` (NaN when nothing was scored), S, guard."""

    B: dict[str, list[float]]
    acc: dict[str, list[float]]
    S: list[float] = field(default_factory=list)
    guarded: list[bool] = field(default_factory=list)

    @classmethod
    def empty(cls, modalities: Iterable[str]) -> "CGGMHistory":
        return cls(B={m: [] for m in modalities}, acc={m: [] for m in modalities})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (NaN → None)."""
        clean = lambda xs: [None if isinstance(x, float) and math.isnan(x) else x for x in xs]  # noqa: E731
        return {
            "B": {m: list(v) for m, v in self.B.items()},
            "acc": {m: clean(v) for m, v in self.acc.items()},
            "S": clean(self.S),
            "guarded": list(self.guarded),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CGGMHistory":
        nan = lambda xs: [math.nan if x is None else float(x) for x in xs]  # noqa: E731
        return cls(
            B={m: [float(x) for x in v] for m, v in d["B"].items()},
            acc={m: nan(v) for m, v in d["acc"].items()},
            S=nan(d["S"]),
            guarded=[bool(g) for g in d["guarded"]],
        )


# --- the plug-in ---------------------------------------------------------------------------
def _classifier(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """f_m: ``(B, D_m) → (B, out_dim)``; ``[-1]`` is the output layer compared in L_gm."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class CGGM(TrainPlugin):
    """Classifier-guided gradient modulation on any backbone whose spec names its encoders.

    Args:
        model: the module whose ``named_modules()`` the spec's paths name (the backbone).
        spec: its hook spec (None: the one registered for ``type(model)``); needs ``encoders``
            for every modality and, unless ``config.head`` is set, a head in ``trainable``.
        config: hyper-parameters.
        extra_params: modality → more parameters modulated with that modality's B
            (e.g. ``prompter.modality_parameters()`` in the prompt stage).

    Plug-in protocol (called by the training engine): :meth:`setup`, :meth:`extra_loss`,
    :meth:`after_backward`, :meth:`on_epoch_end`, :meth:`state_dict`, :meth:`load_state_dict`.
    Representations are captured only while the encoder module is in training mode.
    """

    name = "cggm"

    def __init__(
        self,
        model: nn.Module,
        spec: HookSpec | Mapping | None = None,
        config: CGGMConfig | None = None,
        *,
        extra_params: Mapping[str, Iterable[nn.Parameter]] | None = None,
    ) -> None:
        self.config = cfg = config or CGGMConfig()
        spec = hook_spec_for(model) if spec is None else spec
        self.spec = spec if isinstance(spec, HookSpec) else HookSpec.from_dict(dict(spec))
        self.model = model
        self.modalities: tuple[str, ...] = self.spec.modalities
        self._check_encoders(type(model).__name__)
        self.spec.validate(model)

        self.task = cfg.task or getattr(model, "task", None)
        if self.task not in ("regression", "classification"):
            raise ValueError(
                f"CGGM needs the task: set CGGMConfig.task to 'regression' or 'classification' "
                f"({type(model).__name__} has task={getattr(model, 'task', None)!r})"
            )
        self.head_path, self.head = self._find_head()
        self.out_dim = self.head.out_features
        hidden = cfg.classifier_hidden or self.head.in_features
        if cfg.lam > 0 and hidden != self.head.in_features:
            raise ValueError(
                f"classifier_hidden={hidden} but head {self.head_path!r} takes {self.head.in_features} features: "
                f"L_gm compares the two output layers' weights, which needs equal shapes; set classifier_hidden="
                f"{self.head.in_features} (or None), or lam=0"
            )
        widths = {m: self._encoder_width(m) for m in self.modalities}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.classifiers = nn.ModuleDict({m: _classifier(widths[m], hidden, self.out_dim) for m in self.modalities})
        self.optimizer = torch.optim.Adam(self.classifiers.parameters(), lr=cfg.classifier_lr)
        self._params = self._modality_parameters(extra_params)

        self.history = CGGMHistory.empty(self.modalities)
        self._prev_acc: dict[str, float | None] = {m: None for m in self.modalities}
        self._step = 0
        self._pending: list[float] | None = None
        self._captured: dict[str, torch.Tensor] = {}
        self._force_capture = False
        self._reset_epoch()
        self._handles = [
            resolve_module(model, self.spec.encoders[m].output).register_forward_hook(self._capture_hook(m))
            for m in self.modalities
        ]

    @classmethod
    def from_recipe_section(
        cls,
        model: nn.Module,
        spec: HookSpec | Mapping | None,
        section: Mapping[str, Any],
        *,
        extra_params: Mapping[str, Iterable[nn.Parameter]] | None = None,
    ) -> "CGGM":
        """Build from a recipe's ``[cggm]`` table; an unknown key is an error listing the allowed ones."""
        return cls(model, spec, CGGMConfig.from_dict(section), extra_params=extra_params)

    # --- construction helpers ----------------------------------------------------------------
    def _check_encoders(self, name: str) -> None:
        enc = self.spec.encoders
        hint = "(modality -> ModalityEncoder(output=path, layout=..., params=[paths])) for every modality"
        if not enc:
            raise ValueError(
                f"backbone {name}'s hook spec names no per-modality encoders; CGGM needs HookSpec.encoders "
                f"{hint} {list(self.modalities)}"
            )
        lacking = [m for m in self.modalities if m not in enc]
        if lacking:
            raise ValueError(
                f"backbone {name}'s hook spec names no encoder for modality {lacking}; CGGM needs HookSpec.encoders "
                f"{hint} {list(self.modalities)}"
            )
        if len(self.modalities) < 2:
            raise ValueError(f"CGGM balances modalities and needs at least two, got {list(self.modalities)}")

    def _find_head(self) -> tuple[str, nn.Linear]:
        if self.config.head is not None:
            module = resolve_module(self.model, self.config.head)
            if not isinstance(module, nn.Linear):
                raise TypeError(f"CGGM head {self.config.head!r} must be an nn.Linear, got {type(module).__name__}")
            return self.config.head, module
        found: tuple[str, nn.Linear] | None = None
        for path in self.spec.trainable:
            for sub, module in resolve_module(self.model, path).named_modules():
                if isinstance(module, nn.Linear):
                    found = (f"{path}.{sub}" if path and sub else path or sub, module)
        if found is None:
            raise ValueError(
                f"CGGM needs the fused head's final nn.Linear: HookSpec.trainable {self.spec.trainable} holds none; "
                f"set head='module.path' in the CGGM config"
            )
        return found

    def _encoder_width(self, m: str) -> int:
        enc = self.spec.encoders[m]
        if enc.width is not None:
            return int(enc.width)
        module = resolve_module(self.model, enc.output)
        for attr in _WIDTH_ATTRS:
            value = getattr(module, attr, None)
            if _is_int(value):
                return value * (2 if attr == "hidden_size" and getattr(module, "bidirectional", False) else 1)
        raise ValueError(
            f"cannot infer the output width of {m}'s encoder {enc.output!r} ({type(module).__name__}); "
            f"give width= in its ModalityEncoder"
        )

    def _modality_parameters(self, extra: Mapping[str, Iterable[nn.Parameter]] | None) -> dict[str, list[nn.Parameter]]:
        extra = dict(extra or {})
        unknown = sorted(set(extra) - set(self.modalities))
        if unknown:
            raise KeyError(f"extra_params names modality {unknown}; known: {list(self.modalities)}")
        owner: dict[int, str] = {}
        out: dict[str, list[nn.Parameter]] = {}
        for m in self.modalities:
            params = [p for path in self.spec.encoders[m].params for p in resolve_module(self.model, path).parameters()]
            params += list(extra.get(m, []))
            out[m] = []
            for p in params:
                if not isinstance(p, torch.Tensor):
                    raise TypeError(f"extra_params[{m!r}] holds a {type(p).__name__}, expected nn.Parameter")
                if owner.get(id(p), m) != m:
                    raise ValueError(
                        f"a parameter {tuple(p.shape)} belongs to both {owner[id(p)]!r} and {m!r}; "
                        f"CGGM needs disjoint sets"
                    )
                if id(p) not in owner:
                    owner[id(p)] = m
                    out[m].append(p)
        return out

    def _capture_hook(self, m: str) -> Callable:
        enc = self.spec.encoders[m]

        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if module.training or self._force_capture:
                self._captured[m] = read_out(output, enc.layout, enc.output).detach()

        return hook

    def _reset_epoch(self) -> None:
        self._epoch_hits = {m: 0.0 for m in self.modalities}
        self._epoch_counted = {m: 0.0 for m in self.modalities}
        self._epoch_B = {m: [] for m in self.modalities}
        self._epoch_guarded = 0

    def _to(self, device: torch.device) -> None:
        """Move the classifiers and their Adam state (``step`` stays on the CPU, as torch keeps it)."""
        if next(self.classifiers.parameters()).device == device:
            return
        self.classifiers.to(device)
        for state in self.optimizer.state.values():
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    state[k] = v.to(device)

    # --- plug-in protocol ------------------------------------------------------------------
    def setup(self, model: nn.Module, optimizer_params: Any = None, accelerator: Any = None) -> None:
        """Put the classifiers on the training device."""
        device = getattr(accelerator, "device", None)
        if device is None:
            device = next(self.model.parameters()).device
        self._to(torch.device(device))

    def extra_loss(
        self, model: nn.Module, batch: Any, preds: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        """Train the classifiers on this step's captured representations, compute B; return λ·L_gm.

        Args:
            batch: the batch dict; its ``"mask"`` (B, M), if any, limits each classifier to present samples.
            preds: the fused output ``(B, out_dim)``; labels: as in :func:`unimodal_stats`.
        """
        if not self._captured and not getattr(model, "training", True):
            return None
        lacking = [m for m in self.modalities if m not in self._captured]
        if lacking:
            paths = {m: self.spec.encoders[m].output for m in lacking}
            raise RuntimeError(
                f"CGGM captured no representation for {paths} in this step; is the model in training mode "
                f"and does its forward run those modules?"
            )
        if preds.shape[-1] != self.out_dim:
            raise ValueError(
                f"the model returned {preds.shape[-1]} outputs but head {self.head_path!r} has {self.out_dim}"
            )
        reps, self._captured = self._captured, {}
        accs = self._train_classifiers(reps, labels, self._batch_mask(batch, preds.shape[0]))
        deltas = []
        for m in self.modalities:
            a, prev = accs[m], self._prev_acc[m]
            deltas.append(a - prev if a is not None and prev is not None else 0.0)
            if a is not None:
                self._prev_acc[m] = a
        if self._step < self.config.warmup_steps:
            coeff, guarded = [1.0] * len(deltas), True
        else:
            coeff, guarded = modulation_coefficients(deltas, self.config.eps, self.config.b_max)
        self._step += 1
        self._pending = coeff
        self._record(coeff, accs, float(sum(deltas)), guarded)
        if self.config.lam == 0:
            return None
        return self.config.lam * direction_loss(coeff, self.cosines())

    def after_backward(self, model: nn.Module | None = None) -> None:
        """Multiply modality m's gradients by ρ·B_m (call before clipping and the optimizer step)."""
        if self._pending is None:
            raise RuntimeError("CGGM.after_backward ran without extra_loss in this step; the engine must call both")
        for m, b in zip(self.modalities, self._pending):
            factor = self.config.rho * b
            for p in self._params[m]:
                if p.requires_grad and p.grad is not None:
                    p.grad.mul_(factor)
        self._pending = None

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Mean B_m over the epoch's steps and each classifier's training accuracy; resets the epoch."""
        out: dict[str, float] = {}
        for m in self.modalities:
            bs = self._epoch_B[m]
            out[f"B_{m}"] = sum(bs) / len(bs) if bs else math.nan
            n = self._epoch_counted[m]
            out[f"acc_{m}"] = self._epoch_hits[m] / n if n else math.nan
        out["guarded_steps"] = float(self._epoch_guarded)
        self._reset_epoch()
        return out

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Classifier weights and Adam state as tensors; step, last accuracies, history as JSON-safe meta."""
        tensors = {f"classifiers.{k}": v.detach().cpu().clone() for k, v in self.classifiers.state_dict().items()}
        optim_tensors, optim_meta = optimizer_to_flat(self.optimizer.state_dict(), prefix="optimizer.")
        tensors.update({k: v.detach().cpu().clone() for k, v in optim_tensors.items()})
        meta = {
            "modalities": list(self.modalities),
            "step": self._step,
            "prev_acc": dict(self._prev_acc),
            "history": self.history.to_dict(),
            "optimizer": optim_meta,
            "config": self.config.to_dict(),
        }
        return tensors, meta

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; a different modality set is an error."""
        if list(meta.get("modalities", [])) != list(self.modalities):
            raise ValueError(
                f"CGGM state is for modalities {meta.get('modalities')}, this plug-in has {list(self.modalities)}"
            )
        unknown = [k for k in tensors if not k.startswith(("classifiers.", "optimizer."))]
        if unknown:
            raise KeyError(f"unexpected CGGM state key(s) {unknown[:5]}")
        weights = {k[len("classifiers."):]: v for k, v in tensors.items() if k.startswith("classifiers.")}
        try:
            self.classifiers.load_state_dict(weights)
        except RuntimeError as e:
            raise ValueError(
                f"CGGM classifier weights do not fit this plug-in (another width or out_dim?): {e}"
            ) from None
        self.optimizer.load_state_dict(optimizer_from_flat(tensors, meta["optimizer"], prefix="optimizer."))
        self._step = int(meta["step"])
        self._prev_acc = {m: (None if a is None else float(a)) for m, a in meta["prev_acc"].items()}
        self.history = CGGMHistory.from_dict(meta["history"])
        self._pending, self._captured = None, {}

    # --- the step's parts -------------------------------------------------------------------
    def _batch_mask(self, batch: Any, n: int) -> torch.Tensor | None:
        mask = batch.get("mask") if isinstance(batch, Mapping) else None
        if mask is None:
            return None
        if mask.dtype != torch.bool or tuple(mask.shape) != (n, len(self.modalities)):
            raise ValueError(
                f"batch['mask'] must be bool (B, {len(self.modalities)}) = ({n}, {len(self.modalities)}), "
                f"columns in the order {list(self.modalities)}; got {mask.dtype} {tuple(mask.shape)}"
            )
        return mask

    def _train_classifiers(
        self, reps: dict[str, torch.Tensor], labels: torch.Tensor, mask: torch.Tensor | None
    ) -> dict[str, float | None]:
        """One Adam step for every f_m on ``reps[m]`` ``(B, D_m)``; ε_m from the pre-update predictions."""
        device = next(iter(reps.values())).device
        self._to(device)
        labels = labels.to(device)
        losses, counts = [], []
        self.classifiers.train()
        with torch.enable_grad(), torch.autocast(device_type=device.type, enabled=False):
            for i, m in enumerate(self.modalities):
                x = self._check_width(m, reps[m]).float()
                keep = None if mask is None else mask[:, i]
                loss, hits, counted = unimodal_stats(self.classifiers[m](x), labels, self.task, keep)
                if loss is not None:
                    losses.append(loss)
                counts.append(torch.stack([hits, counted]))
            counts_t = torch.stack(counts)  # (M, 2)
            self.optimizer.zero_grad(set_to_none=True)
            if losses:
                torch.stack(losses).sum().backward()
            self._sync(counts_t)
            self.optimizer.step()
        accs: dict[str, float | None] = {}
        for m, (hits, counted) in zip(self.modalities, counts_t.tolist()):
            accs[m] = hits / counted if counted else None
            self._epoch_hits[m] += hits
            self._epoch_counted[m] += counted
        return accs

    def _check_width(self, m: str, x: torch.Tensor) -> torch.Tensor:
        want = self.classifiers[m][0].in_features
        if x.shape[-1] != want:
            raise ValueError(
                f"{m}'s encoder {self.spec.encoders[m].output!r} gives width {x.shape[-1]}, expected {want}; "
                f"fix width= or layout= in its ModalityEncoder (layout {self.spec.encoders[m].layout!r})"
            )
        return x

    def _sync(self, counts: torch.Tensor) -> None:
        """Sum hit counts and average classifier gradients across processes."""
        world = _world_size()
        if world == 1:
            return
        dist.all_reduce(counts)
        for p in self.classifiers.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.div_(world)

    def cosines(self) -> torch.Tensor:
        """cos_m between f_m's output weight (constant) and the head's weight (with grad): ``(M,)``."""
        w = self.head.weight.float().flatten()
        cos = [
            F.cosine_similarity(self.classifiers[m][-1].weight.detach().float().to(w.device).flatten(), w, dim=0)
            for m in self.modalities
        ]
        return torch.stack(cos)

    def _record(self, coeff: list[float], accs: dict[str, float | None], s: float, guarded: bool) -> None:
        for m, b in zip(self.modalities, coeff):
            self.history.B[m].append(b)
            self.history.acc[m].append(math.nan if accs[m] is None else accs[m])
            self._epoch_B[m].append(b)
        self.history.S.append(s)
        self.history.guarded.append(guarded)
        self._epoch_guarded += int(guarded)

    # --- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def unimodal_accuracy(
        self,
        loader: Iterable[Mapping[str, Any]],
        model: nn.Module | None = None,
        forward: Callable[[nn.Module, Mapping[str, Any]], Any] | None = None,
    ) -> dict[str, float]:
        """Each classifier's accuracy on a data loader (eval mode, no updates; NaN if nothing scored).

        Args:
            loader: batches as in the batch contract (modality tensors, ``"labels"``, optional ``"mask"``).
            model: the model to run (default: the one given at construction).
            forward: ``forward(model, batch)`` runs the model; default passes each modality under its
                spec keyword (``HookSpec.features``) and ``mask=`` when the forward takes one.
        """
        model = model if model is not None else self.model
        forward = forward or self._default_forward
        device = next(model.parameters()).device
        hits = {m: 0.0 for m in self.modalities}
        counted = {m: 0.0 for m in self.modalities}
        was_training, classifiers_training = model.training, self.classifiers.training
        model.eval()
        self.classifiers.eval()
        self._to(device)
        self._force_capture, self._captured = True, {}
        try:
            for batch in loader:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                forward(model, batch)
                mask = self._batch_mask(batch, batch["labels"].shape[0])
                for i, m in enumerate(self.modalities):
                    if m not in self._captured:
                        raise RuntimeError(f"the forward did not run {m}'s encoder {self.spec.encoders[m].output!r}")
                    x = self._check_width(m, self._captured[m]).float()
                    keep = None if mask is None else mask[:, i]
                    _, h, c = unimodal_stats(self.classifiers[m](x), batch["labels"], self.task, keep)
                    hits[m] += float(h)
                    counted[m] += float(c)
                self._captured = {}
        finally:
            self._force_capture, self._captured = False, {}
            model.train(was_training)
            self.classifiers.train(classifiers_training)
        return {m: hits[m] / counted[m] if counted[m] else math.nan for m in self.modalities}

    def _default_forward(self, model: nn.Module, batch: Mapping[str, Any]) -> Any:
        kwargs = {self.spec.features[m]: batch[m] for m in self.modalities}
        if "mask" in batch and "mask" in inspect.signature(model.forward).parameters:
            kwargs["mask"] = batch["mask"]
        return model(**kwargs)

    def remove(self) -> None:
        """Detach the capture hooks (the plug-in is unusable afterwards)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CGGM(modalities={list(self.modalities)}, task={self.task!r}, head={self.head_path!r}, "
            f"rho={c.rho}, lam={c.lam})"
        )

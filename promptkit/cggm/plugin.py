"""The CGGM training plug-in: per-modality classifiers, ρ·B_m gradient scaling and λ·L_gm.

One training step, in the order the engine calls it (see :mod:`promptkit.train.plugins`)::

    forward        capture hooks keep each encoder's output, detached, as (B, D_m)
    extra_loss     one Adam step per classifier f_m; ε_m, Δ_m, B_m; returns λ·L_gm
    backward       (the engine's)
    after_backward grad θ_m ← ρ·B_m · grad θ_m

The classifiers f_m themselves (built, moved, trained one step, synced) are in :mod:`.classifiers`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import optimizer_from_flat, optimizer_to_flat
from ..hookspec import HookSpec, hook_spec_for, resolve_module
from ..plugins import TrainPlugin
from .classifiers import (
    build_classifiers,
    check_width,
    move_classifiers,
    train_classifiers,
)
from .coefficients import (
    direction_loss,
    modulation_coefficients,
    read_out,
    unimodal_stats,
)
from .config import CGGMConfig
from .history import CGGMHistory
from .targets import check_encoders, encoder_width, find_head, modality_parameters


class CGGM(TrainPlugin):
    """Classifier-guided gradient modulation on any backbone whose spec names its encoders.

    Args:
        model: the module whose ``named_modules()`` the spec's paths name (the backbone).
        spec: its hook spec (None: the one registered for ``type(model)``); needs ``encoders``
            for every modality and, unless ``config.head`` is set, a head in ``trainable``.
        config: hyper-parameters.
        extra_params: modality → more parameters modulated with that modality's B
            (e.g. ``prompter.modality_parameters()`` in the prompt stage).
        task: ``"regression"`` or ``"classification"`` (the data's ``task``); used when
            ``config.task`` is unset, else the model's ``task`` attribute.

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
        task: str | None = None,
    ) -> None:
        self.config = cfg = config or CGGMConfig()
        spec = hook_spec_for(model) if spec is None else spec
        self.spec = spec if isinstance(spec, HookSpec) else HookSpec.from_dict(dict(spec))
        self.model = model
        self.modalities: tuple[str, ...] = self.spec.modalities
        check_encoders(self.spec, type(model).__name__)
        self.spec.validate(model)

        self.task = cfg.task or task or getattr(model, "task", None)
        if self.task not in ("regression", "classification"):
            raise ValueError(
                f"CGGM needs the task, 'regression' or 'classification': pass CGGM(..., task=data.task) or set "
                f"CGGMConfig.task (got task={task!r}; {type(model).__name__} has task={getattr(model, 'task', None)!r})"
            )
        self.head_path, self.head = find_head(model, self.spec, cfg.head)
        self.out_dim = self.head.out_features
        hidden = cfg.classifier_hidden or self.head.in_features
        if cfg.lam > 0 and hidden != self.head.in_features:
            raise ValueError(
                f"classifier_hidden={hidden} but head {self.head_path!r} takes {self.head.in_features} features: "
                f"L_gm compares the two output layers' weights, which needs equal shapes; set classifier_hidden="
                f"{self.head.in_features} (or None), or lam=0"
            )
        widths = {m: encoder_width(model, self.spec, m) for m in self.modalities}
        self.classifiers = build_classifiers(widths, hidden, self.out_dim, cfg.seed)
        self.optimizer = torch.optim.Adam(self.classifiers.parameters(), lr=cfg.classifier_lr)
        self._params = modality_parameters(model, self.spec, extra_params)

        self.history = CGGMHistory.empty(self.modalities)
        self._prev_acc: dict[str, float | None] = {m: None for m in self.modalities}
        self._step = 0
        self._pending: list[float] | None = None
        self._captured: dict[str, torch.Tensor] = {}
        self._force_capture = False
        self._accelerator: Any = None  # set by setup()
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
        task: str | None = None,
    ) -> CGGM:
        """Build from a recipe's ``[cggm]`` table; an unknown key is an error listing the allowed ones.
        ``task`` (the data's) is used when the table does not set one."""
        return cls(model, spec, CGGMConfig.from_dict(section), extra_params=extra_params, task=task)

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

    # --- plug-in protocol ------------------------------------------------------------------
    def setup(self, model: nn.Module, optimizer_params: Any = None, accelerator: Any = None) -> None:
        """Put the classifiers on the training device; keep the accelerator, which syncs the
        classifiers' statistics and gradients across the processes of a distributed run."""
        self._accelerator = accelerator
        device = getattr(accelerator, "device", None)
        if device is None:
            device = next(self.model.parameters()).device
        move_classifiers(self.classifiers, self.optimizer, torch.device(device))

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
        """One Adam step for every f_m on ``reps[m]`` ``(B, D_m)``; ε_m from the pre-update predictions,
        added to the epoch's counts."""
        accelerator = getattr(self, "_accelerator", None)
        counts = train_classifiers(
            self.classifiers, self.optimizer, reps, labels, self.task, mask, self.spec.encoders, accelerator
        )
        accs: dict[str, float | None] = {}
        for m, (hits, counted) in zip(self.modalities, counts):
            accs[m] = hits / counted if counted else None
            self._epoch_hits[m] += hits
            self._epoch_counted[m] += counted
        return accs

    def cosines(self) -> torch.Tensor:
        """cos_m between f_m's output weight (constant) and the head's weight (with grad): ``(M,)``."""
        w = self.head.weight.float().flatten()
        cos = [
            F.cosine_similarity(self.classifiers[m][-1].weight.detach().float().to(w.device).flatten(), w, dim=0)
            for m in self.modalities
        ]
        return torch.stack(cos)

    def _record(self, coeff: list[float], accs: dict[str, float | None], s: float, guarded: bool) -> None:
        self.history.append(dict(zip(self.modalities, coeff)), accs, s, guarded)
        for m, b in zip(self.modalities, coeff):
            self._epoch_B[m].append(b)
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
        move_classifiers(self.classifiers, self.optimizer, device)
        self._force_capture, self._captured = True, {}
        try:
            for batch in loader:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                forward(model, batch)
                mask = self._batch_mask(batch, batch["labels"].shape[0])
                for i, m in enumerate(self.modalities):
                    if m not in self._captured:
                        raise RuntimeError(f"the forward did not run {m}'s encoder {self.spec.encoders[m].output!r}")
                    x = check_width(self.classifiers, m, self._captured[m], self.spec.encoders[m]).float()
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
        kwargs = self.spec.kwargs({m: batch[m] for m in self.modalities})
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

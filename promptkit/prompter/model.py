"""MissingModalityPrompter: MPLMM's three prompt types on a frozen backbone, through hooks.

The forward pass, in the order data moves::

    features ─► zero-fill missing ─► MMGM generates them ─► backbone(**features)
                                         module entries: MMGM's output at the extractor
                                         signal hooks: + P_NMS / P_MS on each projected sequence
                                         type hooks:   [P'_MT ; sequence] into encoders, trimmed after
                                         trainable:    the head trains with the prompts

The hooks (:mod:`.hooks`) read the per-batch mask from this prompter instance, never from global
state; :mod:`.counts` counts what it trains; :mod:`.batch_inputs` checks and zero-fills a batch;
:mod:`.feature_modules` runs MMGM at the extractor of a ``features`` module entry; :mod:`.widths`
finds each hook point's width (read from the module, else measured on ``example=``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..feature_points import batch_size_of, zero_at_extractors
from ..hookspec import HookSpec, hook_spec_for, resolve_module, trainable_parameters
from ..modalities import ModalitySet, check_mask
from .batch_inputs import BatchInputs
from .calibrate import calibrate_init
from .config import PrompterConfig
from .counts import PromptCounts
from .feature_modules import ModuleFeatures
from .hooks import PromptHooks
from .mmgm import MissingModalityGenerator
from .signal import MissingSignalPrompts
from .type_prompt import MissingTypePrompts
from .verify import verify_hooks
from .widths import resolve_widths

# backbone -> the prompter whose hooks sit on it; a second wrap is refused until unwrap()
_WRAPPED: weakref.WeakKeyDictionary[nn.Module, weakref.ref] = weakref.WeakKeyDictionary()


def _holder(backbone: nn.Module) -> MissingModalityPrompter | None:
    ref = _WRAPPED.get(backbone)
    return ref() if ref is not None else None


class MissingModalityPrompter(PromptHooks, PromptCounts, BatchInputs, ModuleFeatures, nn.Module):
    """A frozen backbone with MPLMM prompts attached at the spec's hook points.

    Args:
        backbone: any ``nn.Module`` taking one keyword tensor ``(B, T_m, D_m)`` per modality (the
            spec's ``features`` names the keywords; its ``output`` reads a non-tensor return value),
            or, for a module entry of ``features``, any input (token ids) whose features that
            module's output is.
        hooks: where to attach; None uses the spec registered for the backbone's class.
        config: the prompts to build.
        feature_dims: raw feature size per modality; read from ``backbone.feature_dims`` when None
            (a module entry's MMGM size is its extractor's output width instead).
        example: one complete batch ``{m: tensor}``, to measure the width of hook modules that do
            not say it (no ``width=``, no width attribute); without it such a module is an error now.
        widths: the widths an adapter recorded (:class:`~promptkit.prompter.widths.HookWidths` dict).

    Other methods built on the same wrapper subclass it and set what differs: the missing-type
    tokens (:meth:`_build_type_prompts`, :meth:`type_tokens`; MPMM's per-case sets), whether they
    need the signal prompts, whether every backbone weight trains (the full fine-tuning control), and
    the adapter type their files are saved as.

    Raises:
        RuntimeError: ``backbone`` is already wrapped (call ``unwrap()`` on that prompter, or
            :func:`promptkit.unwrap` on the backbone, first).
    """

    trains_backbone: ClassVar[bool] = False
    """Every backbone weight trains (a control); the adapter then holds the whole backbone."""
    type_tokens_need_signal: ClassVar[bool] = True
    """The missing-type tokens are built from the missing-signal prompts (eq. 4-5)."""
    adapter_type: ClassVar[str] = "prompter"
    """The ``adapter_type`` its adapter directories are saved as (:mod:`promptkit.adapter_files`)."""

    def __init__(
        self,
        backbone: nn.Module,
        hooks: HookSpec | dict | None = None,
        config: PrompterConfig | None = None,
        feature_dims: dict[str, int] | None = None,
        example: dict[str, Any] | None = None,
        widths: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if _holder(backbone) is not None:
            raise RuntimeError(
                f"this {type(backbone).__name__} is already wrapped by a MissingModalityPrompter (its hooks are still "
                "attached, e.g. after a failed prompt_tune); call .unwrap() on that prompter, or "
                "promptkit.unwrap(backbone), before wrapping it again"
            )
        spec = hook_spec_for(backbone) if hooks is None else hooks
        self.spec = spec if isinstance(spec, HookSpec) else HookSpec.from_dict(spec)
        self.config = config or PrompterConfig()
        self.backbone = backbone
        if self.spec.needs_output_function:
            raise ValueError(
                f"hooks: 'output' is the record {self.spec.output.to_dict()} of a function, not the function (a spec "
                "read from a file imports nothing it names); pass the function itself, hooks={..., 'output': fn}"
            )
        self.spec.validate(backbone)
        self.modality_set = ModalitySet(self.spec.modalities)
        self.feature_dims = self._feature_dims(feature_dims)
        self.hook_widths = resolve_widths(backbone, self.spec, example, widths)
        modules = self.spec.feature_modules
        self.mmgm_dims = {  # MMGM's D_m: the raw features', or the extractor output's for a module entry
            m: self.hook_widths.features[m] if m in modules else self.feature_dims[m] for m in self.modality_set.names
        }

        cfg = self.config
        self.mmgm = (
            MissingModalityGenerator(
                self.mmgm_dims, cfg.mmgm_dim, cfg.prompt_length, cfg.mmgm_heads, cfg.dropout, cfg.init_std
            )
            if cfg.generative
            else None
        )
        needs_signal = cfg.signal or (cfg.type and self.type_tokens_need_signal)  # eq. 4-5 builds on P_MS/P_NMS
        if needs_signal and set(self.spec.signal) != set(self.modality_set.names):
            lacking = sorted(set(self.modality_set.names) - set(self.spec.signal))
            raise KeyError(f"signal/type prompts need a signal hook for every modality; the spec lacks {lacking}")
        self.signal_widths = {  # in mask column order, whatever order the spec lists them in
            m: self.hook_widths.signal[m] for m in self.modality_set.names if m in self.spec.signal
        }
        self.signal_prompts = (
            MissingSignalPrompts(self.signal_widths, cfg.prompt_length, cfg.init_std) if needs_signal else None
        )
        self.type_widths = list(self.hook_widths.type)
        if cfg.type and not self.spec.type:
            raise ValueError(
                "config.type is on but the hook spec names no type targets: set [prompt.prompter] type = false in "
                "the recipe (PrompterConfig(type=False)), or name the encoder modules in the spec's 'type'"
            )
        self.config = cfg = self._type_positions_for_spec(cfg)
        self._type_prefix = cfg.type and cfg.type_positions == "prefix"
        self.type_prompts = self._build_type_prompts() if cfg.type else None

        self._original_requires_grad = {n: p.requires_grad for n, p in backbone.named_parameters()}
        self._mask: torch.Tensor | None = None
        self._type_tokens: list[torch.Tensor] | None = None
        self._enabled = True
        self._verified = False
        self._aux_loss: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        try:
            self._freeze_backbone()
            self._check_something_trains()
            self._attach_hooks()
        except BaseException:
            self.unwrap()
            raise
        _WRAPPED[backbone] = weakref.ref(self)

    def _type_positions_for_spec(self, cfg: PrompterConfig) -> PrompterConfig:
        """``cfg``, or ``cfg`` with ``type_positions='shift'`` (and a warning) when it asks for
        ``'prefix'`` but a type target has no ``prefix_len_arg`` to tell its module the prompt count
        (the shipped recipes ask for ``'prefix'``, which only their own backbones support)."""
        if not (cfg.type and cfg.type_positions == "prefix"):
            return cfg
        lacking = [t.path for t in self.spec.type if t.prefix_len_arg is None]
        if not lacking:
            return cfg
        warnings.warn(
            f"type_positions='prefix' falls back to 'shift' on {type(self.backbone).__name__}: type target(s) "
            f"{lacking} have no prefix_len_arg (the keyword that takes the prompt count), so the prompt tokens "
            "take the leading positions; set [prompt.prompter] type_positions = \"shift\" in the recipe "
            "(PrompterConfig(type_positions='shift')) to say so, or give each type target prefix_len_arg",
            UserWarning, stacklevel=4,
        )
        return dataclasses.replace(cfg, type_positions="shift")

    def _feature_dims(self, given: dict[str, int] | None) -> dict[str, int]:
        """The raw feature size of every string entry's modality (a module entry's is kept when given)."""
        own = getattr(self.backbone, "feature_dims", None)
        dims = given or own
        needed = [m for m in self.modality_set.names if m not in self.spec.feature_modules]
        if not dims and needed:
            raise ValueError(
                f"the feature size of each modality is unknown: {type(self.backbone).__name__} has no 'feature_dims' "
                "attribute; pass wrap(backbone, ..., feature_dims={modality: D}) (prompt_tune takes them from the data)"
            )
        dims = dims or {}
        unknown = set(needed) - set(dims)
        if unknown:
            raise KeyError(f"feature_dims lacks modality {sorted(unknown)}; it has {sorted(dims)}")
        dims = {m: int(dims[m]) for m in self.modality_set.names if m in dims}
        if given and own:
            backbone_dims = {m: int(own[m]) for m in dims if m in own}
            clash = {m: (dims[m], backbone_dims[m]) for m in backbone_dims if backbone_dims[m] != dims[m]}
            if clash:
                raise ValueError(
                    f"feature_dims {dims} disagree with the backbone's own feature_dims {dict(own)} on {sorted(clash)}"
                    " (given, backbone); the backbone was built for other data"
                )
        return dims

    def _build_type_prompts(self) -> nn.Module:
        """MPLMM's missing-type prompts (eq. 4-5), built from the signal prompts of each modality."""
        cfg = self.config
        return MissingTypePrompts(self.signal_widths, self.type_widths, cfg.prompt_length, cfg.prompt_length)

    def _freeze_backbone(self) -> None:
        for p in self.backbone.parameters():
            p.requires_grad_(self.trains_backbone)
        for path in self.spec.trainable:
            for p in trainable_parameters(self.backbone, path).values():
                p.requires_grad_(True)

    # --- forward -----------------------------------------------------------------------
    def forward(self, mask: torch.Tensor | None = None, **features: torch.Tensor) -> torch.Tensor:
        """Run the prompted backbone.

        Args:
            mask: availability ``(B, M)`` bool, columns in spec order; None means complete.
            **features: one ``(B, T_m, D_m)`` tensor per modality (a module entry's: its raw input,
                e.g. token ids). The content of a missing modality's tensor is never read; only its
                shape is.

        Returns:
            the backbone's prediction ``(B, out_dim)`` (read by the spec's ``output``).

        The first prompted forward first checks the hooks on this batch (:meth:`verify_hooks`).
        """
        features = self._check_features(features)
        first = next(iter(features.values()))
        batch = batch_size_of(first)
        if mask is None:
            mask = self.modality_set.complete_mask(batch).to((first[0] if isinstance(first, (tuple, list)) else first).device)
        check_mask(mask, len(self.modality_set), batch)
        raw = features
        features, finite = self._zero_filled(features, mask)
        if self.config.check_inputs:
            self._check_finite({m: x for m, x in features.items() if m not in finite})
        self._aux_loss = None
        if not self._enabled:
            with zero_at_extractors(self.backbone, self.spec, mask):
                return self._call_backbone(features)
        if not self._verified and (self.signal_prompts is not None or self.type_prompts is not None
                                   or self.spec.feature_modules):
            self.verify_hooks(raw)
        at_modules = None
        if self.mmgm is not None:
            features, at_modules = self._generate(raw, features, mask)
        missing = ~mask
        if self.type_prompts is not None:
            self._type_tokens = self.type_tokens(missing)
        self._mask = mask
        try:
            if at_modules is not None:
                return self.spec.read_output(self._call_with_features(self.spec.kwargs(features), *at_modules))
            with zero_at_extractors(self.backbone, self.spec, mask):  # MMGM off: module entries zero-filled there
                return self._call_backbone(features)
        finally:
            self._mask, self._type_tokens = None, None

    def type_tokens(self, missing: torch.Tensor) -> list[torch.Tensor]:
        """The missing-type tokens for a batch whose ``missing`` is ``(B, M)`` bool: one ``(B, l_p, d_t)``
        per type target, from the signal prompts (eq. 4-5)."""
        pairs = {m: self.signal_prompts.pair(m) for m in self.modality_set.names}
        return self.type_prompts(pairs, missing)

    def _reconstruction_loss(
        self, real: dict[str, torch.Tensor], generated: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean squared error of generated vs real features over the dropped (modality, sample) pairs."""
        losses = []
        for i, m in enumerate(self.modality_set.names):
            rows = ~mask[:, i]
            if rows.any():
                losses.append(torch.nn.functional.mse_loss(generated[m][rows], real[m][rows]))
        return torch.stack(losses).mean() if losses else torch.zeros((), device=mask.device)

    def auxiliary_loss(self) -> torch.Tensor | None:
        """The reconstruction loss of the last training forward (when configured), else None.

        The frozen backbone's own auxiliary losses are not used in the prompt stage.
        """
        return self._aux_loss

    def _call_backbone(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.spec.read_output(self.backbone(**self.spec.kwargs(features)))

    # --- peft-like API -----------------------------------------------------------------
    @contextlib.contextmanager
    def prompts_disabled(self) -> Iterator[None]:
        """The bare backbone on zero-filled inputs: the baseline without prompts or MMGM."""
        previous, self._enabled = self._enabled, False
        try:
            yield
        finally:
            self._enabled = previous

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Prompts, MMGM and the spec's trainable backbone modules - nothing else."""
        if self.trains_backbone:  # a fine-tuning control: the whole backbone is the "adapter"
            return dict(self.state_dict())
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}
        for path in self.spec.trainable:
            if path in dict(self.backbone.named_modules()):
                prefix = f"backbone.{path}." if path else "backbone."
                state.update({prefix + k: v for k, v in resolve_module(self.backbone, path).state_dict().items()})
            else:  # a bare parameter
                state.update({f"backbone.{n}": p.detach() for n, p in trainable_parameters(self.backbone, path).items()})
        return state

    def calibrate_init(self, features: dict[str, torch.Tensor]) -> dict[str, float]:
        """Scale the random init to the tensors the prompts join (``config.init_scale == "data"``);
        see :func:`promptkit.prompter.calibrate.calibrate_init`. Returns the measured RMS values."""
        return calibrate_init(self, features)

    def verify_hooks(self, features: dict[str, torch.Tensor]) -> None:
        """Check on one complete batch ``{m: (B, T_m, D_m)}`` that every signal/type hook module runs
        once per forward and sees its declared layout (:func:`promptkit.prompter.verify.verify_hooks`).
        The first prompted forward does this by itself."""
        verify_hooks(self, self._check_features(dict(features)))
        self._verified = True

    def unwrap(self) -> nn.Module:
        """Remove every hook, restore the backbone's requires_grad flags, return the backbone.

        Safe to call twice; the backbone can then be wrapped again."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for n, p in self.backbone.named_parameters():
            p.requires_grad_(self._original_requires_grad.get(n, True))
        if _holder(self.backbone) is self:
            del _WRAPPED[self.backbone]
        return self.backbone

    def save_pretrained(self, directory: str | Path) -> None:
        from .io import save_adapter

        save_adapter(self, Path(directory))

    @classmethod
    def from_pretrained(
        cls, backbone: nn.Module, directory: str | Path, hooks: HookSpec | dict | None = None, *,
        check_weights: bool = True,
    ) -> MissingModalityPrompter:
        """The prompter saved in ``directory`` (:meth:`save_pretrained`), on ``backbone``.

        Args:
            hooks: the hook spec the adapter was saved with, for an adapter whose ``output`` was a
                function: the file records only that one was used (its name, as provenance) and
                loading imports nothing, so the caller gives it back. It must equal the saved spec
                in every other key. None: the spec saved in the adapter's config.
            check_weights: refuse a backbone whose frozen weights (all but the trainable modules)
                are not the ones the adapter was trained on.

        Raises:
            AdapterLoadError: see :func:`promptkit.prompter.io.load_adapter`.
        """
        from .io import load_adapter

        return load_adapter(cls, backbone, Path(directory), hooks=hooks, check_weights=check_weights)


def unwrap(backbone: nn.Module) -> nn.Module:
    """Unwrap whatever prompter holds ``backbone`` (a no-op on a bare backbone); returns it."""
    holder = _holder(backbone)
    return holder.unwrap() if holder is not None else backbone


def wrap(
    backbone: nn.Module,
    hooks: HookSpec | dict | None = None,
    config: PrompterConfig | None = None,
    **kwargs: Any,
) -> MissingModalityPrompter:
    """Attach MPLMM prompts to ``backbone`` and freeze it: see :class:`MissingModalityPrompter`."""
    return MissingModalityPrompter(backbone, hooks=hooks, config=config, **kwargs)

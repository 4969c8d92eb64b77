"""MissingModalityPrompter: MPLMM's three prompt types on a frozen backbone, through hooks.

The forward pass, in the order data moves::

    features ─► zero-fill missing ─► MMGM generates them ─► backbone(**features)
                                         signal hooks: + P_NMS / P_MS on each projected sequence
                                         type hooks:   [P'_MT ; sequence] into encoders, trimmed after
                                         trainable:    the head trains with the prompts

The per-batch mask reaches the hooks through this prompter instance (set for the duration of one
forward), never through global state, so two prompters can live in one process.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..hookspec import HookSpec, SignalTarget, TypeTarget, hook_spec_for, resolve_module
from ..inputs import check_feature_tensor
from ..modalities import ModalitySet, check_mask
from .config import PrompterConfig
from .mmgm import MissingModalityGenerator
from .signal import MissingSignalPrompts
from .type_prompt import MissingTypePrompts, PerCaseTypePrompts
from .widths import module_width

# backbone -> the prompter whose hooks sit on it; a second wrap is refused until unwrap()
_WRAPPED: weakref.WeakKeyDictionary[nn.Module, weakref.ref] = weakref.WeakKeyDictionary()


def _holder(backbone: nn.Module) -> MissingModalityPrompter | None:
    ref = _WRAPPED.get(backbone)
    return ref() if ref is not None else None


class MissingModalityPrompter(nn.Module):
    """A frozen backbone with MPLMM prompts attached at the spec's hook points.

    Args:
        backbone: any ``nn.Module`` taking one keyword tensor ``(B, T_m, D_m)`` per modality (the
            spec's ``features`` names the keywords; its ``output`` reads a non-tensor return value).
        hooks: where to attach; None uses the spec registered for the backbone's class.
        config: the prompts to build.
        feature_dims: raw feature size per modality; read from ``backbone.feature_dims`` when None.

    Raises:
        RuntimeError: ``backbone`` is already wrapped (call ``unwrap()`` on that prompter, or
            :func:`promptkit.unwrap` on the backbone, first).
    """

    def __init__(
        self,
        backbone: nn.Module,
        hooks: HookSpec | dict | None = None,
        config: PrompterConfig | None = None,
        feature_dims: dict[str, int] | None = None,
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

        cfg = self.config
        self.mmgm = (
            MissingModalityGenerator(
                self.feature_dims, cfg.mmgm_dim, cfg.prompt_length, cfg.mmgm_heads, cfg.dropout, cfg.init_std
            )
            if cfg.generative
            else None
        )
        per_case = cfg.type and cfg.type_source == "per_case"
        needs_signal = cfg.signal or (cfg.type and not per_case)  # MPLMM's type tokens are built from P_MS/P_NMS
        if needs_signal and set(self.spec.signal) != set(self.modality_set.names):
            lacking = sorted(set(self.modality_set.names) - set(self.spec.signal))
            raise KeyError(f"signal/type prompts need a signal hook for every modality; the spec lacks {lacking}")
        self.signal_widths = {  # in mask column order, whatever order the spec lists them in
            m: self._width(self.spec.signal[m].path, self.spec.signal[m].width, "signal")
            for m in self.modality_set.names
            if m in self.spec.signal
        }
        self.signal_prompts = (
            MissingSignalPrompts(self.signal_widths, cfg.prompt_length, cfg.init_std) if needs_signal else None
        )
        self.type_widths = [self._width(t.path, t.width, "type") for t in self.spec.type]
        if cfg.type and not self.spec.type:
            raise ValueError("config.type is on but the hook spec names no type targets")
        self._type_prefix = cfg.type and cfg.type_positions == "prefix"
        for target in self.spec.type if self._type_prefix else ():
            if target.prefix_len_arg is None:
                raise ValueError(
                    f"config.type_positions='prefix' needs every type target to name the keyword that takes the "
                    f"prompt count, but type target {target.path!r} has no prefix_len_arg; set "
                    f"TypeTarget(prefix_len_arg=...) or use type_positions='shift'"
                )
        if not cfg.type:
            self.type_prompts = None
        elif per_case:
            self.type_prompts = PerCaseTypePrompts(len(self.modality_set.cases), self.type_widths, cfg.prompt_length,
                                                   cfg.init_std)
        else:
            self.type_prompts = MissingTypePrompts(self.signal_widths, self.type_widths, cfg.prompt_length,
                                                   cfg.prompt_length)

        self._original_requires_grad = {n: p.requires_grad for n, p in backbone.named_parameters()}
        self._mask: torch.Tensor | None = None
        self._type_tokens: list[torch.Tensor] | None = None
        self._enabled = True
        self._verified = False
        self._aux_loss: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        try:
            self._freeze_backbone()
            self._attach_hooks()
        except BaseException:
            self.unwrap()
            raise
        _WRAPPED[backbone] = weakref.ref(self)

    # --- construction ------------------------------------------------------------------
    def _feature_dims(self, given: dict[str, int] | None) -> dict[str, int]:
        own = getattr(self.backbone, "feature_dims", None)
        dims = given or own
        if not dims:
            raise ValueError(
                f"the feature size of each modality is unknown: {type(self.backbone).__name__} has no 'feature_dims' "
                "attribute; pass wrap(backbone, ..., feature_dims={modality: D}) (prompt_tune takes them from the data)"
            )
        unknown = set(self.modality_set.names) - set(dims)
        if unknown:
            raise KeyError(f"feature_dims lacks modality {sorted(unknown)}; it has {sorted(dims)}")
        dims = {m: int(dims[m]) for m in self.modality_set.names}
        if given and own:
            backbone_dims = {m: int(own[m]) for m in self.modality_set.names if m in own}
            clash = {m: (dims[m], backbone_dims[m]) for m in backbone_dims if backbone_dims[m] != dims[m]}
            if clash:
                raise ValueError(
                    f"feature_dims {dims} disagree with the backbone's own feature_dims {dict(own)} on {sorted(clash)}"
                    " (given, backbone); the backbone was built for other data"
                )
        return dims

    def _width(self, path: str, width: int | None, kind: str) -> int:
        if width is not None:
            return int(width)
        module = resolve_module(self.backbone, path)
        found = module_width(module, "output" if kind == "signal" else "input")
        if found is not None:
            return found
        raise ValueError(
            f"cannot infer the width of {kind} target {path!r} ({type(module).__name__}); "
            f"give width= in its {'SignalTarget' if kind == 'signal' else 'TypeTarget'}"
        )

    def _freeze_backbone(self) -> None:
        for p in self.backbone.parameters():
            p.requires_grad_(self.config.train_backbone)
        for path in self.spec.trainable:
            for p in resolve_module(self.backbone, path).parameters():
                p.requires_grad_(True)

    def _attach_hooks(self) -> None:
        if self.config.signal:
            for name, target in self.spec.signal.items():
                module = resolve_module(self.backbone, target.path)
                self._handles.append(module.register_forward_hook(self._signal_hook(name, target)))
        if self.config.type:
            for j, target in enumerate(self.spec.type):
                module = resolve_module(self.backbone, target.path)
                self._handles.append(
                    module.register_forward_pre_hook(self._type_pre_hook(j, target), with_kwargs=True)
                )
                if not target.keep:
                    self._handles.append(module.register_forward_hook(self._type_post_hook(target)))

    # --- hooks -------------------------------------------------------------------------
    def _active(self) -> bool:
        return self._enabled and self._mask is not None

    def _signal_hook(self, modality: str, target: SignalTarget):
        col = self.modality_set.index(modality)
        width = self.signal_widths[modality]

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if not self._active():
                return None
            seq = output[0] if isinstance(output, tuple) else output  # an RNN's (output, state)
            feat_axis = 1 if target.layout == "BDT" else -1
            batch_axis = 1 if target.layout == "TBD" else 0
            if seq.dim() != (2 if target.layout == "BD" else 3) or seq.shape[feat_axis] != width \
                    or seq.shape[batch_axis] != self._mask.shape[0]:
                raise ValueError(
                    f"signal target {target.path!r} ({modality}) is declared {target.layout} with width {width} for a "
                    f"batch of {self._mask.shape[0]}, but its output has shape {tuple(seq.shape)}"
                )
            seq = self.signal_prompts.add_to(modality, seq, ~self._mask[:, col], target.layout)
            return (seq, *output[1:]) if isinstance(output, tuple) else seq

        return hook

    def _type_pre_hook(self, j: int, target: TypeTarget):
        width = self.type_widths[j]

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if not self._active():
                return None
            args, kwargs = list(args), dict(kwargs)
            in_kwargs = isinstance(target.arg, str)
            seq = kwargs[target.arg] if in_kwargs else args[target.arg]
            batch_axis = 1 if target.layout == "TBD" else 0
            if seq.dim() != 3 or seq.shape[-1] != width or seq.shape[batch_axis] != self._mask.shape[0]:
                raise ValueError(
                    f"type target {target.path!r} is declared {target.layout} with tokens of width {width} for a batch "
                    f"of {self._mask.shape[0]}, but its sequence argument has shape {tuple(seq.shape)}"
                )
            tokens = self._type_tokens[j].to(seq.dtype)  # (B, l_p, d)
            if target.layout == "TBD":
                seq = torch.cat([tokens.transpose(0, 1), seq], dim=0)
            else:
                seq = torch.cat([tokens, seq], dim=1)
            if in_kwargs:
                kwargs[target.arg] = seq
            else:
                args[target.arg] = seq
            if self._type_prefix:  # the tokens get no position; the real steps keep theirs
                kwargs[target.prefix_len_arg] = (kwargs.get(target.prefix_len_arg) or 0) + tokens.shape[1]
            pad = target.padding_mask_arg
            if pad is not None and kwargs.get(pad) is not None:
                keep = torch.zeros(tokens.shape[0], tokens.shape[1], dtype=kwargs[pad].dtype, device=seq.device)
                kwargs[pad] = torch.cat([keep, kwargs[pad]], dim=1)
            return tuple(args), kwargs

        return hook

    def _type_post_hook(self, target: TypeTarget):
        length = self.config.prompt_length

        def trim(x: torch.Tensor) -> torch.Tensor:
            return x[length:] if target.layout == "TBD" else x[:, length:]

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if not self._active():
                return None
            if isinstance(output, tuple):
                return (trim(output[0]), *output[1:])
            return trim(output)

        return hook

    # --- forward -----------------------------------------------------------------------
    def forward(self, mask: torch.Tensor | None = None, **features: torch.Tensor) -> torch.Tensor:
        """Run the prompted backbone.

        Args:
            mask: availability ``(B, M)`` bool, columns in spec order; None means complete.
            **features: one ``(B, T_m, D_m)`` tensor per modality. The content of a missing
                modality's tensor is never read; only its shape is.

        Returns:
            the backbone's prediction ``(B, out_dim)`` (read by the spec's ``output``).

        The first prompted forward first checks the hooks on this batch (:meth:`verify_hooks`).
        """
        features = self._check_features(features)
        batch = next(iter(features.values())).shape[0]
        if mask is None:
            mask = self.modality_set.complete_mask(batch).to(next(iter(features.values())).device)
        check_mask(mask, len(self.modality_set), batch)
        raw = features
        features, finite = self._zero_filled(features, mask)
        if self.config.check_inputs:
            self._check_finite({m: x for m, x in features.items() if m not in finite})
        self._aux_loss = None
        if not self._enabled:
            return self._call_backbone(features)
        if not self._verified and (self.signal_prompts is not None or self.type_prompts is not None):
            self.verify_hooks(raw)
        if self.mmgm is not None:
            generated = self.mmgm(features, mask)
            if self.training and self.config.reconstruction_weight > 0:
                self._aux_loss = self.config.reconstruction_weight * self._reconstruction_loss(raw, generated, mask)
            features = generated
        missing = ~mask
        if self.type_prompts is not None:
            self._type_tokens = self.type_tokens(missing)
        self._mask = mask
        try:
            return self._call_backbone(features)
        finally:
            self._mask, self._type_tokens = None, None

    def type_tokens(self, missing: torch.Tensor) -> list[torch.Tensor]:
        """The missing-type tokens for a batch whose ``missing`` is ``(B, M)`` bool: one ``(B, l_p, d_t)``
        per type target, from the signal prompts (MPLMM) or per case (``type_source="per_case"``)."""
        if isinstance(self.type_prompts, PerCaseTypePrompts):
            return self.type_prompts(self.modality_set.case_ids_from_masks(~missing))
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

    def _check_features(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = self.modality_set.names
        unknown = set(features) - set(names)
        if unknown:
            raise KeyError(f"unknown modality {sorted(unknown)}; this prompter knows {list(names)}")
        lacking = [m for m in names if m not in features]
        if lacking:
            raise KeyError(f"missing input tensor(s) for {lacking}: pass every modality (content of missing ones is ignored)")
        weight = next(self.backbone.parameters(), None)
        for m in names:
            check_feature_tensor(m, features[m], self.feature_dims[m], None if weight is None else weight.dtype)
        batch = {features[m].shape[0] for m in names}
        if len(batch) > 1:
            raise ValueError(f"modalities disagree on batch size: { {m: features[m].shape[0] for m in names} }")
        return features

    def _zero_filled(
        self, features: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], set[str]]:
        """Missing rows set to zero, whatever they held; a modality every sample has is passed
        through without a copy. The fast path multiplies by the mask; NaN/inf in a missing row
        survive that (``nan * 0``), which one reduction detects, and then ``where`` redoes it.

        Returns the filled features and the modalities that reduction proved finite (the finite
        check need not look at them again)."""
        complete = mask.all(dim=0).tolist()
        out, finite = {}, set()
        for i, m in enumerate(self.modality_set.names):
            x = features[m]
            if complete[i]:
                out[m] = x
                continue
            keep = mask[:, i, None, None]
            filled = x * keep.to(x.dtype)
            if torch.isfinite(filled.sum()):
                finite.add(m)
            else:
                filled = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
            out[m] = filled
        return out, finite

    def _check_finite(self, features: dict[str, torch.Tensor]) -> None:
        for m, x in features.items():
            # one reduction: a NaN/inf anywhere makes the sum non-finite (so may an overflow,
            # which the exact check below then clears)
            if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
                bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten()[:10].tolist()
                raise ValueError(f"{m} features hold NaN/inf in available sample(s) {bad}")

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
        if self.config.train_backbone:  # a fine-tuning control: the whole backbone is the "adapter"
            return dict(self.state_dict())
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}
        for path in self.spec.trainable:
            module = resolve_module(self.backbone, path)
            prefix = f"backbone.{path}." if path else "backbone."
            state.update({prefix + k: v for k, v in module.state_dict().items()})
        return state

    def prompt_parameters(self) -> dict[str, int]:
        """Parameter counts: the prompts themselves (P_G, P_MS/P_NMS, P_MT with M_m) and MMGM's networks."""
        count = lambda ps: sum(p.numel() for p in ps)
        mmgm_all = count(self.mmgm.parameters()) if self.mmgm is not None else 0
        generative = count(self.mmgm.generative_prompts.parameters()) if self.mmgm is not None else 0
        return {
            "generative": generative,
            "signal": count(self.signal_prompts.parameters()) if self.signal_prompts is not None else 0,
            "type": count(self.type_prompts.parameters()) if self.type_prompts is not None else 0,
            "mmgm_networks": mmgm_all - generative,
        }

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trainable prompt/MMGM parameters that belong to one modality (for CGGM)."""
        out: dict[str, list[nn.Parameter]] = {m: [] for m in self.modality_set.names}
        if self.mmgm is not None:
            for m, ps in self.mmgm.modality_parameters().items():
                out[m] += ps
        if self.signal_prompts is not None:
            for m in out:
                out[m] += [self.signal_prompts.real[m], self.signal_prompts.generated[m]]
        if isinstance(self.type_prompts, MissingTypePrompts):  # per-case tokens belong to no one modality
            for m, ps in self.type_prompts.modality_parameters().items():
                out[m] += ps
        return out

    def prompt_tensors(self) -> list[nn.Parameter]:
        """The prompts themselves (P_G, P_NMS/P_MS, P_MT and M_m), e.g. for their own learning rate."""
        out: list[nn.Parameter] = []
        if self.mmgm is not None:
            out += list(self.mmgm.generative_prompts.parameters())
        if self.signal_prompts is not None:
            out += list(self.signal_prompts.parameters())
        if self.type_prompts is not None:
            out += list(self.type_prompts.parameters())
        return out

    def calibrate_init(self, features: dict[str, torch.Tensor]) -> dict[str, float]:
        """Scale the random init to the tensors the prompts join (``config.init_scale == "data"``);
        see :func:`promptkit.prompter.calibrate.calibrate_init`. Returns the measured RMS values."""
        from .calibrate import calibrate_init

        return calibrate_init(self, features)

    def verify_hooks(self, features: dict[str, torch.Tensor]) -> None:
        """Check on one complete batch ``{m: (B, T_m, D_m)}`` that every signal/type hook module runs
        once per forward and sees its declared layout (:func:`promptkit.prompter.verify.verify_hooks`).
        The first prompted forward does this by itself."""
        from .verify import verify_hooks

        verify_hooks(self, self._check_features(dict(features)))
        self._verified = True

    def trainable_summary(self) -> dict[str, float]:
        backbone = sum(p.numel() for p in self.backbone.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        counts = self.prompt_parameters()
        prompts = counts["generative"] + counts["signal"] + counts["type"]
        return {
            "backbone_params": backbone,
            "prompt_params": prompts,
            "trainable_params": trainable,
            "prompt_share": prompts / backbone,
            "trainable_share": trainable / backbone,
        }

    def print_trainable_parameters(self) -> None:
        s = self.trainable_summary()
        print(
            f"trainable params: {s['trainable_params']:,} || backbone params: {s['backbone_params']:,} || "
            f"trainable%: {100 * s['trainable_share']:.2f} || prompts%: {100 * s['prompt_share']:.2f}"
        )

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

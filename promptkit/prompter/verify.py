"""Check a hook spec against the backbone it is attached to, by watching one forward pass.

A spec is the user's claim about a model nobody here wrote. Two mistakes pass silently unless
something looks: a hook module the forward never calls (MMSA's MulT skips ``proj_l`` when the
text features already have width d, so no text signal prompt would ever be added), and a layout
declared with two axes swapped (a type target declared ``BTD`` on a time-first module, a signal
target ``BTD`` on a Conv1d's ``BDT`` output), which run whenever the swapped axes have equal size.

:func:`verify_hooks` runs the bare backbone once on a batch (no gradients, eval mode, the RNG
state restored), counts each hook module's calls (exactly one per forward) and checks every
observed tensor against its declared layout: the batch axis must hold the batch size, the feature
axis the width. Where the sizes cannot tell (B equal to another axis; a signal target's width
equal to its time axis), it runs a probe with one more sample, or one more time step, and checks
that the axis that grows is the declared one. A ``features`` module entry is checked the same way
as a signal target: its extractor runs once per forward and the sequence its ``index``/``key``
selects fits its layout and width.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..feature_points import batch_size_of, select_feature, take_rows
from ..hookspec import HookSpec, SignalTarget, TypeTarget, call_backbone, resolve_module


class HookError(ValueError):
    """A hook point that does not behave as the spec declares (never called, or another layout)."""


# axis of (batch, time, feature) in each declared layout; None: the layout has no time axis
_AXES: dict[str, tuple[int, int | None, int]] = {"BTD": (0, 1, 2), "BDT": (0, 2, 1), "TBD": (1, 0, 2), "BD": (0, None, 1)}


@dataclass
class _Target:
    """One hook point under check."""

    label: str  # "signal target 'proj.t' (text)"
    path: str
    layout: str
    width: int
    kind: str  # "signal": the module's output; "type": its sequence argument; "feature": a module entry's output
    arg: int | str = 0
    entry: Any = None  # the FeatureModule of a "feature" target
    shapes: list[tuple[int, ...]] = field(default_factory=list)


def verify_hooks(prompter: nn.Module, features: dict[str, torch.Tensor]) -> None:
    """Raise :class:`HookError` if a signal/type hook of ``prompter`` is never called, called more
    than once per forward, or sees a tensor that contradicts its declared layout.

    Args:
        prompter: a :class:`~promptkit.MissingModalityPrompter`.
        features: one complete batch ``{m: (B, T_m, D_m)}`` (its content does not matter).
    """
    spec: HookSpec = prompter.spec
    targets = _targets(prompter)
    if not targets:
        return
    batch = batch_size_of(next(iter(features.values())))
    _observe(prompter.backbone, spec, targets, features)
    for t in targets:
        if len(t.shapes) != 1:
            raise HookError(
                f"{t.label} ran {len(t.shapes)} times in one forward of {type(prompter.backbone).__name__}; a hook "
                "module must run exactly once per forward"
                + (" (is the module skipped for these inputs, e.g. when a projection is not needed?)" if not t.shapes
                   else " (a module reused for several inputs cannot be a hook point)")
                + "; point the spec at a module that always runs"
            )
    ambiguous_batch, ambiguous_time = [], []
    for t in targets:
        b_axis, t_axis, d_axis = _AXES[t.layout]
        shape = t.shapes[0]
        want_rank = 2 if t.layout == "BD" else 3
        if len(shape) != want_rank:
            raise HookError(f"{t.label} is declared {t.layout}, but its tensor has shape {shape} (rank {len(shape)})")
        if shape[b_axis] != batch:
            raise HookError(
                f"{t.label} is declared {t.layout}, but its tensor has shape {shape}: axis {b_axis} should hold the "
                f"batch size {batch}" + _suggest(t, shape, batch)
            )
        if shape[d_axis] != t.width:
            raise HookError(
                f"{t.label} is declared {t.layout} with width {t.width}, but its tensor has shape {shape}: axis "
                f"{d_axis} should hold the width" + _suggest(t, shape, batch)
            )
        if sum(size == batch for size in shape) > 1:
            ambiguous_batch.append(t)
        if t.kind in ("signal", "feature") and t_axis is not None and shape[t_axis] == shape[d_axis]:
            ambiguous_time.append(t)
    if ambiguous_batch:
        rows = torch.cat([torch.arange(batch), torch.zeros(1, dtype=torch.long)])
        probe = {m: take_rows(x, rows.to(_device(x))) for m, x in features.items()}
        _probe(prompter.backbone, spec, ambiguous_batch, probe, axis_of=lambda t: _AXES[t.layout][0],
               what=f"one more sample (batch {batch + 1})")
    if ambiguous_time:
        probe = {m: torch.cat([x, torch.zeros_like(x[:, :1])], dim=1) for m, x in features.items()}
        _probe(prompter.backbone, spec, ambiguous_time, probe, axis_of=lambda t: _AXES[t.layout][1],
               what="one more time step per modality")


def _targets(prompter: nn.Module) -> list[_Target]:
    spec, cfg = prompter.spec, prompter.config
    out: list[_Target] = []
    if cfg.signal:
        for m in prompter.modality_set.names:
            target: SignalTarget = spec.signal[m]
            out.append(_Target(f"signal target {target.path!r} ({m})", target.path, target.layout,
                               prompter.signal_widths[m], "signal"))
    if cfg.type:
        for j, target in enumerate(spec.type):
            tt: TypeTarget = target
            out.append(_Target(f"type target {tt.path!r}", tt.path, tt.layout, prompter.type_widths[j], "type", tt.arg))
    for m, entry in spec.feature_modules.items():
        out.append(_Target(f"feature module {entry.path!r} ({m})", entry.path, entry.layout,
                           prompter.hook_widths.features[m], "feature", entry=entry))
    return out


def _device(x: Any) -> torch.device:
    return (x[0] if isinstance(x, (tuple, list)) else x).device


def _first_tensor(x: Any) -> Any:
    return x[0] if isinstance(x, (tuple, list)) and x else x


@contextlib.contextmanager
def _watch(backbone: nn.Module, targets: list[_Target]) -> Iterator[None]:
    for t in targets:
        t.shapes = []
    handles = []
    for t in targets:
        module = resolve_module(backbone, t.path)
        if t.kind == "signal":
            def hook(mod, args, out, t=t):
                t.shapes.append(tuple(_first_tensor(out).shape))
            handles.append(module.register_forward_hook(hook))
        elif t.kind == "feature":
            def feature_hook(mod, args, out, t=t):
                try:
                    t.shapes.append(tuple(select_feature(out, t.entry).shape))
                except (TypeError, KeyError, IndexError) as e:
                    raise HookError(str(e)) from None
            handles.append(module.register_forward_hook(feature_hook))
        else:
            def pre(mod, args, kwargs, t=t):
                if isinstance(t.arg, str):
                    if t.arg not in kwargs:
                        raise HookError(f"{t.label}: its forward was not given the keyword {t.arg!r} (got "
                                        f"{sorted(kwargs)}); set TypeTarget(arg=...) to the sequence argument")
                    seq = kwargs[t.arg]
                else:
                    if t.arg >= len(args):
                        raise HookError(f"{t.label}: its forward got {len(args)} positional argument(s), the spec "
                                        f"names position {t.arg}; set TypeTarget(arg=...) to the sequence argument")
                    seq = args[t.arg]
                t.shapes.append(tuple(seq.shape))
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _observe(backbone: nn.Module, spec: HookSpec, targets: list[_Target], features: dict[str, torch.Tensor]) -> None:
    """One bare forward with every target watched; the RNG state and train/eval mode are restored."""
    device = _device(next(iter(features.values())))
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(), \
                _watch(backbone, targets):
            call_backbone(backbone, features, spec)
    finally:
        backbone.train(was_training)


def _probe(backbone, spec, targets: list[_Target], features, *, axis_of, what: str) -> None:
    before = {id(t): t.shapes[0] for t in targets}
    try:
        _observe(backbone, spec, targets, features)
    except HookError:
        raise
    except Exception as e:  # the model may not accept other sizes (fixed lengths): say what was not checked
        names = ", ".join(t.label for t in targets)
        warnings.warn(f"could not verify the declared layout of {names}: two of its axes have the same size and a "
                      f"probe with {what} failed ({type(e).__name__}: {e})", stacklevel=3)
        return
    for t in targets:
        old, new = before[id(t)], t.shapes[0] if len(t.shapes) == 1 else None
        if new is None or len(new) != len(old):
            continue
        grew = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
        declared = axis_of(t)
        if not grew:
            warnings.warn(f"could not verify the declared layout of {t.label}: a probe with {what} changed none of "
                          f"its axes {old}", stacklevel=3)
        elif declared not in grew or _AXES[t.layout][2] in grew:
            raise HookError(
                f"{t.label} is declared {t.layout}, but a probe with {what} changed its tensor from {old} to {new}: "
                f"the axis that moved is {grew}, the declared layout puts it at axis {declared}"
            )


def _suggest(t: _Target, shape: tuple[int, ...], batch: int) -> str:
    """A hint naming the declared layouts that fit ``shape``."""
    fits = []
    for layout, (b, _, d) in _AXES.items():
        if t.kind == "type" and layout not in ("BTD", "TBD"):
            continue
        if (layout == "BD") == (len(shape) == 2) and shape[b] == batch and shape[d] == t.width:
            fits.append(layout)
    return f"; the observed shape fits layout {' or '.join(fits)}" if fits else ""

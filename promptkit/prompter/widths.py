"""Feature widths of hook modules: what a signal target outputs and what a type target takes.

torch's own modules are read by their constructor arguments (``nn.Linear``'s ``out_features``,
``nn.Conv1d``'s ``out_channels``, an RNN's ``hidden_size`` times its directions, a transformer
layer's ``self_attn.embed_dim``, a ``LayerNorm``'s normalized size, an ``nn.Sequential``'s first layer
for its input and its last layer that sets a width for its output); any other module by the first integer attribute among the usual
names (``width``, ``d_model``, ``embed_dim``, ...). A module that gives none needs ``width=`` in
its hook target, or is measured on a batch (:func:`resolve_widths` with ``example=``: the
output of the module, or the input of a type target, in one probe forward).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..feature_points import select_feature
from ..hookspec import HookSpec, call_backbone, resolve_module

Side = Literal["input", "output"]

_OUTPUT_ATTRS = ("width", "embed_dim", "d_model", "hidden_size", "out_channels", "out_features", "out_dim")
_INPUT_ATTRS = ("width", "embed_dim", "d_model", "input_size", "in_features", "in_channels")


def module_width(module: nn.Module, side: Side) -> int | None:
    """The feature size of ``module``'s input or output tokens, or None when it cannot be read."""
    if isinstance(module, nn.Sequential):  # its input: the first layer's; its output: the last that sets one
        layers = list(module) if side == "input" else list(module)[::-1]
        for layer in layers:
            found = module_width(layer, side)
            if found is not None:
                return found
        return None
    if isinstance(module, nn.LayerNorm) and module.normalized_shape:
        return int(module.normalized_shape[-1])
    if isinstance(module, nn.TransformerEncoder):
        return module_width(module.layers[0], side) if len(module.layers) else None
    if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        return int(module.self_attn.embed_dim)
    if isinstance(module, nn.MultiheadAttention):
        return int(module.embed_dim)
    if isinstance(module, nn.RNNBase):
        if side == "input":
            return int(module.input_size)
        size = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
        return int(size) * (2 if module.bidirectional else 1)
    if isinstance(module, nn.Linear):
        return int(module.in_features if side == "input" else module.out_features)
    if isinstance(module, nn.modules.conv._ConvNd):
        return int(module.in_channels if side == "input" else module.out_channels)
    for attr in _INPUT_ATTRS if side == "input" else _OUTPUT_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value * (2 if attr == "hidden_size" and getattr(module, "bidirectional", False) else 1)
    return None


@dataclass
class HookWidths:
    """The width of every hook point of a prompter, however it was found: ``signal`` (modality →
    output width), ``type`` (each type target's token width, in spec order) and ``features``
    (module entry's modality → its feature size D_m). Recorded in adapter files (``to_dict``)."""

    signal: dict[str, int] = field(default_factory=dict)
    type: list[int] = field(default_factory=list)
    features: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"signal": dict(self.signal), "type": list(self.type), "features": dict(self.features)}


@dataclass
class _Want:
    kind: str  # "signal", "type", "feature"
    key: str | int  # modality, or the type target's index
    target: Any  # SignalTarget, TypeTarget or FeatureModule

    @property
    def label(self) -> str:
        if self.kind == "type":
            return f"type target {self.target.path!r} (type target {self.key})"
        return f"{'feature module' if self.kind == 'feature' else 'signal target'} {self.target.path!r} ({self.key})"

    @property
    def cls(self) -> str:
        return type(self.target).__name__


def resolve_widths(backbone: nn.Module, spec: HookSpec, example: Mapping[str, Any] | None = None,
                   recorded: Mapping[str, Any] | None = None) -> HookWidths:
    """Every hook point's width: ``width=`` in its target, else the one an adapter ``recorded``,
    else read from the module (:func:`module_width`), else measured on the module's output (its
    input, for a type target) in one forward of the bare backbone on ``example`` (a complete batch
    ``{m: tensor}``; eval mode, no gradients, the RNG state restored).

    Raises:
        ValueError: a width none of these gives (without ``example``: at wrap time, before any
            training), naming the target and ``width=``.
    """
    recorded = recorded or {}
    wants = [_Want("signal", m, t) for m, t in spec.signal.items()]
    wants += [_Want("type", j, t) for j, t in enumerate(spec.type)]
    wants += [_Want("feature", m, e) for m, e in spec.feature_modules.items()]
    found: dict[tuple[str, str | int], int] = {}
    unresolved: list[_Want] = []
    saved = {"signal": recorded.get("signal") or {}, "feature": recorded.get("features") or {},
             "type": dict(enumerate(recorded.get("type") or []))}
    for w in wants:
        width = w.target.width if w.target.width is not None else saved[w.kind].get(w.key)
        if width is None:
            module = resolve_module(backbone, w.target.path)
            width = module_width(module, "input" if w.kind == "type" else "output")
        if width is None:
            unresolved.append(w)
        else:
            found[(w.kind, w.key)] = int(width)
    if unresolved and example is None:
        w = unresolved[0]
        module = resolve_module(backbone, w.target.path)
        raise ValueError(
            f"cannot infer the width of {w.label} ({type(module).__name__}) from the module: give width= in its "
            f"{w.cls}, or pass example= (one batch {{modality: tensor}}) to read it from the module's "
            "output on that batch (prompt_tune does so on the first training batch)"
        )
    if unresolved:
        found.update(_probe(backbone, spec, example, unresolved))
    return HookWidths(
        signal={m: found[("signal", m)] for m in spec.signal},
        type=[found[("type", j)] for j in range(len(spec.type))],
        features={m: found[("feature", m)] for m in spec.feature_modules},
    )


_FEATURE_AXIS = {"BTD": -1, "TBD": -1, "BDT": 1, "BD": -1}


@torch.no_grad()
def _probe(backbone: nn.Module, spec: HookSpec, example: Mapping[str, Any], wants: list[_Want]) -> dict:
    seen: dict[tuple[str, str | int], int] = {}
    handles = []

    def record(w: _Want, x: Any) -> None:
        if (w.kind, w.key) not in seen and isinstance(x, torch.Tensor) and x.dim() >= 2:
            axis = -1 if w.kind == "type" else _FEATURE_AXIS[w.target.layout]
            seen[(w.kind, w.key)] = int(x.shape[axis])

    for w in wants:
        module = resolve_module(backbone, w.target.path)
        if w.kind == "type":
            arg = w.target.arg
            handles.append(module.register_forward_pre_hook(
                lambda mod, args, kwargs, w=w, arg=arg: record(
                    w, kwargs.get(arg) if isinstance(arg, str) else args[arg] if arg < len(args) else None),
                with_kwargs=True))
        elif w.kind == "signal":
            handles.append(module.register_forward_hook(
                lambda mod, args, out, w=w: record(w, out[0] if isinstance(out, (tuple, list)) and out else out)))
        else:
            handles.append(module.register_forward_hook(
                lambda mod, args, out, w=w: record(w, select_feature(out, w.target))))
    first = next(iter(example.values()))
    device = (first[0] if isinstance(first, (tuple, list)) else first).device
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            call_backbone(backbone, example, spec)
    except Exception as e:
        raise ValueError(
            f"reading the width of {', '.join(w.label for w in wants)} from a probe forward failed "
            f"({type(e).__name__}: {e}); give width= in the target"
        ) from e
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    lacking = [w for w in wants if (w.kind, w.key) not in seen]
    if lacking:
        raise ValueError(
            f"{', '.join(w.label for w in lacking)} did not run (or gave no tensor) in a probe forward of "
            f"{type(backbone).__name__}, so its width is unknown; give width= in the target"
        )
    return seen

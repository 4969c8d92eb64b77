"""Input projections: the backbone modules that read a modality's raw features ``(B, T_m, D_m)``.

Cross-feature-space transfer (the paper's design: a backbone pre-trained on CMU-MOSEI's features,
adapted to IEMOCAP's or CH-SIMS's) re-initialises them for the target's feature sizes and trains
them with the prompts and the head; everything else stays frozen and bit-identical
(``[prompt] reinit_projections``, :func:`promptkit.backbone_files.transfer_backbone`).

A modality's input projection is its ``signal`` hook target when that module is an ``nn.Linear``
or an ``nn.Conv1d`` (``PointwiseConv1d`` included) whose input width is the modality's feature
size: the point right after the projection is where the paper adds the missing-signal prompts
(eq. 3). Shipped backbones: MulT projects every modality (``proj.<m>``, a pointwise Conv1d);
MMIM (``text_enc.proj``) and UniMSE (``text_proj``) project the feature text only, their audio and
vision go straight into LSTMs; MISA's LSTM extractors read every modality's raw features. A
backbone whose modality has no such module is refused by :func:`input_projections`, naming it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from torch import nn

from .hookspec import HookSpec, resolve_module

__all__ = ["input_projections", "projection_width", "with_projections_trainable"]


def projection_width(module: nn.Module) -> int | None:
    """The input width of an ``nn.Linear`` / ``nn.Conv1d``, else None (not a projection)."""
    if isinstance(module, nn.Linear):
        return int(module.in_features)
    if isinstance(module, nn.Conv1d) and module.groups == 1:
        return int(module.in_channels)
    return None


def input_projections(model: nn.Module, spec: HookSpec, feature_dims: Mapping[str, int] | None = None) -> dict[str, str]:
    """Modality → the path of its input projection in ``model`` (see the module docstring).

    Args:
        feature_dims: the sizes the projections read (default ``model.feature_dims``).

    Raises:
        ValueError: a modality read at a module entry (token ids), without a signal target, or whose
            signal target is not a Linear/Conv1d over its raw features; the message names them all.
    """
    dims = dict(feature_dims if feature_dims is not None else getattr(model, "feature_dims", {}) or {})
    out, bad = {}, []
    for m in spec.modalities:
        target = spec.signal.get(m)
        if m in spec.feature_modules:
            bad.append(f"{m} (read at the module {spec.feature_modules[m].path!r}, e.g. token ids: no feature projection)")
        elif target is None:
            bad.append(f"{m} (no signal hook)")
        else:
            module = resolve_module(model, target.path)
            width = projection_width(module)
            if width is None or (m in dims and width != dims[m]):
                what = type(module).__name__ if width is None else f"{type(module).__name__} reading {width} features"
                bad.append(f"{m} ({target.path!r} is a {what}, not a Linear/Conv1d over its {dims.get(m, '?')} "
                           "input features)")
            else:
                out[m] = target.path
    if bad:
        raise ValueError(
            f"reinit_projections needs each modality's input projection, but {type(model).__name__} has none for "
            f"{'; '.join(bad)}. Its raw features are read by modules that are more than a projection (e.g. an LSTM), "
            "so a backbone with other feature sizes cannot be transferred by re-initialising projections"
        )
    return out


def with_projections_trainable(model: nn.Module, spec: HookSpec) -> HookSpec:
    """``spec`` with every input projection added to its ``trainable`` modules (the paper's trainable
    set: prompts, MMGM, the input projections and the output layer)."""
    extra = [p for p in input_projections(model, spec).values() if p not in spec.trainable]
    return dataclasses.replace(spec, trainable=[*spec.trainable, *extra])

"""Feature widths of hook modules: what a signal target outputs and what a type target takes.

torch's own modules are read by their constructor arguments (``nn.Linear``'s ``out_features``,
``nn.Conv1d``'s ``out_channels``, an RNN's ``hidden_size`` times its directions, a transformer
layer's ``self_attn.embed_dim``, a ``LayerNorm``'s normalized size, an ``nn.Sequential``'s first layer
for its input and its last layer that sets a width for its output); any other module by the first integer attribute among the usual
names (``width``, ``d_model``, ``embed_dim``, ...). A module that gives none needs ``width=`` in
its hook target.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

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

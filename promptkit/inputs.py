"""Checks of one input tensor: a torch tensor of a floating dtype the model can read, of rank 3.

A numpy array, an integer tensor or a float dtype other than the model's weights would otherwise
fail deep inside the model with a raw torch message (or, for float64, run at another precision);
here they are refused with what to do instead. Under mixed precision the inputs stay float32 and
autocast does the casting, so half-precision inputs are refused too.
"""

from __future__ import annotations

from typing import Any

import torch


def check_feature_tensor(name: str, x: Any, width: int, dtype: torch.dtype | None = None) -> None:
    """Raise a clear error unless ``x`` is a ``(B, T, width)`` floating tensor of ``dtype``.

    Args:
        name: the modality, for the message.
        width: the feature size D the model was built for.
        dtype: the model's parameter dtype (None: any floating dtype).
    """
    if not isinstance(x, torch.Tensor):
        hint = " (convert it with torch.from_numpy(x).float())" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{name} features must be a torch.Tensor, got {type(x).__module__}.{type(x).__name__}{hint}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} features must be a floating-point tensor, got dtype {x.dtype}; convert with x.float()")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} features have dtype {x.dtype} but the model's weights are {dtype}; convert with x.to({dtype}) "
            "(for mixed precision keep float32 inputs and run under autocast)"
        )
    if x.dim() != 3 or x.shape[-1] != width:
        raise ValueError(f"{name} features must have shape (B, T, {width}), got {tuple(x.shape)}")

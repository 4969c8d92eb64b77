"""Every method promptkit trains and scores beside the zero-filled reference, on the same data and masks.

One registry (:mod:`promptkit.methods.registry`) knows them all: MPLMM (:mod:`.mplmm`), the controls
(:mod:`.controls`: head only, full fine-tuning) and the paper's baselines (substitution and modality
dropout, the lower bound, MCTN, MMIN, MPMM and its attention prompts, LoRA). A method trains from a
recipe, the data and a pre-trained backbone file and returns a :class:`TrainedMethod`: a forward
``(features, mask) -> (B, out_dim)`` that :func:`promptkit.evaluation.evaluate_protocol` scores, with
its trainable-parameter count. Each module registers its methods with :func:`register_method`.
"""

from .registry import (
    MethodSpec,
    TrainedMethod,
    UnknownMethodError,
    default_methods,
    get_method,
    list_methods,
    method_label,
    method_short,
    register_method,
)

__all__ = [
    "MethodSpec",
    "TrainedMethod",
    "UnknownMethodError",
    "default_methods",
    "get_method",
    "list_methods",
    "method_label",
    "method_short",
    "register_method",
]

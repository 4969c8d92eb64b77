"""The contract every promptkit backbone keeps.

A backbone is an ``nn.Module`` that takes one keyword tensor per modality,
``text=(B, T_t, D_t), audio=(B, T_a, D_a), vision=(B, T_v, D_v)``, and returns ``(B, out_dim)``:
one regression score (``out_dim = 1``) or class logits. Backbones with training losses of their
own (MISA, MMIM) leave them, already weighted, in :meth:`auxiliary_loss` after each forward.

State a backbone keeps between training steps outside its parameters and buffers (MMIM's entropy
memory) is exposed through ``training_state() -> {name: tensor}`` and
``load_training_state(state)``, so the training engine checkpoints it and a resumed run continues
exactly; a backbone without such state defines neither.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from promptkit.inputs import check_feature_tensor

from .text_encoders import check_token_input

Task = Literal["regression", "classification"]


class MSABackbone(nn.Module):
    """Base class: records the modality names, feature sizes, output size and task.

    Args:
        feature_dims: feature size per modality, in modality order, e.g.
            ``{"text": 300, "audio": 5, "vision": 20}``.
        out_dim: 1 for regression, the number of classes (or binary tasks x 2) otherwise.
        task: ``"regression"`` or ``"classification"``.
    """

    def __init__(self, feature_dims: dict[str, int], out_dim: int = 1, task: Task = "regression") -> None:
        super().__init__()
        if not feature_dims:
            raise ValueError("feature_dims must name at least one modality")
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
        self.feature_dims = {str(k): int(v) for k, v in feature_dims.items()}
        self.modalities: tuple[str, ...] = tuple(self.feature_dims)
        self.out_dim = int(out_dim)
        self.task: Task = task
        self._aux_loss: torch.Tensor | None = None
        self.token_modalities: tuple[str, ...] = ()  # read as token ids (B, 3, T); feature_dims is their vocabulary

    def check_features(self, features: dict[str, torch.Tensor]) -> None:
        """Raise a clear error on a missing/unknown modality, a wrong feature shape, an input that is
        not a tensor of the weights' floating dtype (numpy, int, float16 into float32 weights), or an
        empty batch (``B = 0``: no forward has a sample to predict). A modality of
        ``token_modalities`` must be integer token ids ``(B, 3, T)`` below its ``feature_dims`` entry."""
        unknown = set(features) - set(self.modalities)
        if unknown:
            raise KeyError(f"unknown modality {sorted(unknown)}; this backbone reads {list(self.modalities)}")
        for name in self.modalities:
            if name not in features:
                raise KeyError(f"missing input {name!r}; this backbone reads {list(self.modalities)}")
            if name in self.token_modalities:
                check_token_input(features[name], self.feature_dims[name], name)
                continue
            weight = next(self.parameters(), None)
            check_feature_tensor(name, features[name], self.feature_dims[name], None if weight is None else weight.dtype)
        empty = [m for m in self.modalities if features[m].shape[0] == 0]
        if empty:
            raise ValueError(f"{type(self).__name__}: the batch is empty ({empty[0]} features have shape "
                             f"{tuple(features[empty[0]].shape)}); a forward needs at least one sample")

    def auxiliary_loss(self) -> torch.Tensor | None:
        """Weighted training loss of the last forward beyond the task loss, or None."""
        return self._aux_loss

    def config(self) -> dict:
        """Keyword arguments that rebuild this backbone with :func:`backbones.create_backbone`."""
        raise NotImplementedError

"""The batch a prompter is given: each modality's tensor checked, missing rows zero-filled, the
available rows checked for NaN/inf.

A mixin of :class:`~promptkit.prompter.model.MissingModalityPrompter`.
"""

from __future__ import annotations

import torch

from ..inputs import check_feature_tensor


class BatchInputs:
    """Checks and zero-fills the per-modality feature tensors ``{m: (B, T_m, D_m)}`` of one batch."""

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

"""The batch a prompter is given: each modality's tensor checked, missing rows zero-filled, the
available rows checked for NaN/inf.

A module entry's input (token ids, a ``(tensor, lengths)`` tuple) is checked for its batch size
only, and zero-filled by :func:`promptkit.feature_points.zero_rows`; its features are checked where
they are read, at the extractor.

A mixin of :class:`~promptkit.prompter.model.MissingModalityPrompter`.
"""

from __future__ import annotations

import torch

from ..feature_points import batch_size_of, zero_rows
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
        modules = self.spec.feature_modules
        for m in names:
            if m in modules:
                if batch_size_of(features[m]) is None:
                    raise TypeError(
                        f"{m} input (read at module {modules[m].path!r}) must be a tensor, or a tuple/list whose first "
                        f"element is one, with the batch on its first axis; got {type(features[m]).__name__}"
                    )
                continue
            check_feature_tensor(m, features[m], self.feature_dims[m], None if weight is None else weight.dtype)
        sizes = {m: batch_size_of(features[m]) for m in names}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"modalities disagree on batch size: {sizes}")
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
        modules = self.spec.feature_modules
        for i, m in enumerate(self.modality_set.names):
            x = features[m]
            if m in modules:  # any dtype; NaN in its features would show at the extractor, not here
                out[m] = x if complete[i] else zero_rows(x, mask[:, i])
                finite.add(m)
                continue
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

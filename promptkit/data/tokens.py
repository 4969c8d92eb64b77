"""Text as token ids: MMSA's ``text_bert`` form, ``(N, 3, T)`` int64 (ids, attention mask, segment ids).

A *token modality* carries, per sample, three rows of ``T`` integers: the token ids (each in
``[0, vocab_size)``), the attention mask (1 on real tokens, 0 on padding) and the segment
(token type) ids (0 or 1, BERT's two segments). Its ``feature_dims`` entry is its vocabulary
size ``V`` (the ids index a ``V``-way one-hot space) and its ``seq_lens`` entry ``T``.

Id 0 is padding (``[PAD]`` in BERT's vocabularies and in the synthetic one), so a token row that
something zero-filled is an empty text (mask all 0), never a run of real tokens: the backbones'
text encoders read an empty row as no text and emit zeros for it, the zero fill of the feature
space. A missing text is meant to be replaced after the text encoder (a hook spec's module
``features`` entry), where its raw ids are never read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

TOKEN_CHANNELS = 3
"""Rows per sample: ids, attention mask, segment ids."""
PAD_ID = 0
"""The padding id, never a real token."""


class TokenFormatError(ValueError):
    """Token ids of the wrong shape, dtype or range."""


def check_tokens(x: Any, vocab_size: int, what: str) -> torch.Tensor:
    """``x`` as an int64 tensor ``(N, 3, T)`` of ids in ``[0, vocab_size)``, a 0/1 mask and 0/1 segments.

    Args:
        x: numpy or torch integer array.
        vocab_size: V; every id must be below it.
        what: names the array in messages (``"split 'train', key 'text_bert'"``).

    Raises:
        TokenFormatError: naming ``what``, the shape or the first offending sample.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
        raise TokenFormatError(f"{what}: vocab_size must be an int >= 2, got {vocab_size!r}")
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TokenFormatError(f"{what}: token ids must be integers, got dtype {t.dtype}")
    if t.dim() != 3 or t.shape[1] != TOKEN_CHANNELS:
        raise TokenFormatError(
            f"{what}: token ids must have shape (N, 3, T) (ids, attention mask, segment ids, as MMSA's text_bert), "
            f"got {tuple(t.shape)}"
        )
    if t.shape[2] == 0:
        raise TokenFormatError(f"{what}: token sequences have length T = 0 (shape {tuple(t.shape)})")
    t = t.long()
    ids, mask, seg = t[:, 0], t[:, 1], t[:, 2]
    for name, bad in (
        (f"ids outside [0, {int(vocab_size)})", (ids < 0) | (ids >= vocab_size)),
        ("an attention mask other than 0/1", (mask != 0) & (mask != 1)),
        ("segment ids other than 0/1", (seg != 0) & (seg != 1)),
    ):
        rows = bad.any(dim=1).nonzero().flatten()
        if len(rows):
            i = int(rows[0])
            first = int(t[i, 0][bad[i]][0]) if name.startswith("ids") else None
            shown = f" (first: id {first})" if first is not None else ""
            raise TokenFormatError(
                f"{what}: sample(s) {rows[:10].tolist()}{' ...' if len(rows) > 10 else ''} hold {name}{shown}"
            )
    return t


def is_token_tensor(x: torch.Tensor) -> bool:
    """An integer tensor: token ids, not features."""
    return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)


BAG_BUCKETS = 512
"""Buckets of :func:`bag_of_ids` (ids hashed by ``id % 512``): a linear probe's size, whatever the vocabulary."""


def bag_of_ids(x: torch.Tensor, buckets: int = BAG_BUCKETS) -> np.ndarray:
    """Token rows ``(N, 3, T)`` → ``(N, buckets)`` float64: each sample's frequencies of its real
    tokens' ids (attention mask 1), id ``i`` counted in bucket ``i % buckets``; the time average a
    linear probe (a ridge ceiling) reads for a token modality, as the mean over the valid steps is
    for features."""
    ids, keep = x[:, 0].long() % buckets, x[:, 1].double()
    bag = torch.zeros(x.shape[0], buckets, dtype=torch.float64).scatter_add_(1, ids, keep)
    return (bag / bag.sum(1, keepdim=True).clamp(min=1.0)).numpy()

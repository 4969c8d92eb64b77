"""Text as token ids (``text="tokens"``): each valid text step's feature vector → the id of its
nearest entry in a fixed codebook, laid out as MMSA's ``text_bert`` ``(N, 3, T)``.

The codebook is what the seed fixes, shared by both domains (like a tokenizer's vocabulary): K
prototype text vectors drawn from the world's *source* mixing, ``p_k = o + g ⊙ z_k W + u_k C``
(latents ``z_k ~ N(0, I_6)`` seen through the text's view with its view noise, nuisance ``u_k``;
no offset in version 1), from a random stream of its own, so the other arrays are unchanged. A
step's id is ``argmin_k |x_t - p_k|``: the ids keep what the nearest prototype's latents say, so a
model that embeds them can read the sentiment the features carried (the tests probe it).

Layout per sample, like a BERT tokenizer's output: ``[CLS]``, the ids of the valid (non-padding)
steps in order (the first ``T - 2`` of them when the text fills all ``T`` steps), ``[SEP]``, then
``[PAD]`` up to ``T``; the attention mask is 1 from ``[CLS]`` to ``[SEP]``; segment ids are 0. The
vocabulary is ``[PAD] = 0``, ``[CLS] = 1``, ``[SEP] = 2`` and the codebook ids ``3 .. K + 2``
(``V = K + 3``).
"""

from __future__ import annotations

import numpy as np

from ..tokens import PAD_ID, TOKEN_CHANNELS
from .latents import N_LATENT, _draw_view
from .views import ModalityView

CLS_ID, SEP_ID = 1, 2
N_SPECIAL = 3
"""``[PAD]``, ``[CLS]``, ``[SEP]``: the codebook ids start after them."""
DEFAULT_CODEBOOK_SIZE = 256
TEXT_FORMS = ("features", "tokens")
_CODEBOOK_STREAM = 0x746F6B  # spawn-key word of the codebook's own random stream
_BLOCK = 4096  # steps per distance block


def check_text_form(text: str, codebook_size: int) -> None:
    """``text`` is ``"features"`` or ``"tokens"``; ``codebook_size`` an int >= 2."""
    if text not in TEXT_FORMS:
        raise ValueError(f"text must be one of {list(TEXT_FORMS)}, got {text!r}")
    if isinstance(codebook_size, bool) or not isinstance(codebook_size, (int, np.integer)) or codebook_size < 2:
        raise ValueError(f"codebook_size must be an int >= 2, got {codebook_size!r}")


def vocab_size(codebook_size: int) -> int:
    """V = K + the three special tokens."""
    return int(codebook_size) + N_SPECIAL


def make_codebook(
    seed: int, k: int, view: ModalityView, mixing: np.ndarray, nuisance: np.ndarray, offset: np.ndarray | None
) -> np.ndarray:
    """The K prototype text vectors ``(K, D)`` float32 (see the module docstring)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(_CODEBOOK_STREAM,))))
    z = rng.standard_normal((int(k), N_LATENT))
    h, u = _draw_view(rng, z, view)
    proto = h @ mixing + u @ nuisance
    if offset is not None:
        proto = proto + offset
    return proto.astype(np.float32)


def quantize(x: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Features ``(N, T, D)`` → token rows ``(N, 3, T)`` int64 (layout in the module docstring).

    A step is valid when it is not all zero (the generator's left padding is exactly 0).
    """
    n, t_len, d = x.shape
    if t_len < 3:
        raise ValueError(f"text as tokens needs at least 3 steps ([CLS], a token, [SEP]); the text has {t_len}")
    flat = x.reshape(-1, d)
    valid = np.abs(flat).max(axis=1) > 0
    ids = np.full(flat.shape[0], PAD_ID, dtype=np.int64)
    sq = (codebook.astype(np.float32) ** 2).sum(1)
    rows = np.flatnonzero(valid)
    for i in range(0, len(rows), _BLOCK):
        r = rows[i : i + _BLOCK]
        dist = sq[None, :] - 2.0 * (flat[r] @ codebook.T)  # |x - p|^2 up to |x|^2
        ids[r] = dist.argmin(axis=1) + N_SPECIAL
    ids = ids.reshape(n, t_len)
    valid = valid.reshape(n, t_len)
    out = np.zeros((n, TOKEN_CHANNELS, t_len), dtype=np.int64)
    count = np.minimum(valid.sum(1), t_len - 2)  # content tokens that fit between [CLS] and [SEP]
    order = np.argsort(~valid, axis=1, kind="stable")  # the valid steps first, in time order
    content = np.take_along_axis(ids, order, axis=1)[:, : t_len - 2]
    pos = np.arange(t_len - 2)[None, :]
    content = np.where(pos < count[:, None], content, PAD_ID)
    out[:, 0, 0] = CLS_ID
    out[:, 0, 1:-1] = content
    out[np.arange(n), 0, count + 1] = SEP_ID
    out[:, 1] = np.arange(t_len)[None, :] <= (count + 1)[:, None]
    return out

"""Text encoders over token ids, as the published MISA and MMIM (BERT) and UniMSE (T5) read text.

Text as token ids is MMSA's ``text_bert`` form: ``(B, 3, T)`` integers, the rows being the ids,
the attention mask (1 on real tokens) and the segment ids. Id 0 is padding, so a row that
something zero-filled (a missing text, whose raw ids a prompter zeroes) has no tokens: the
encoders emit zeros for it, the zero fill of their output space, never a run of ``[PAD]``
embeddings.

- :class:`BertTextEncoder`: ``(B, 3, T)`` → BERT's last hidden states ``(B, T, H)``, padding steps 0.
- :class:`T5TokenEncoder`: ``(B, 3, T)`` → T5's token embeddings ``(B, T, d)``, padding steps 0
  (UniMSE feeds them to its T5 encoder, which is also its fusion network).

Both output zero at padding steps, so what reads them downstream tells padding from the steps
themselves (:func:`valid_steps`) and never from the raw mask: MMGM, hooked at a text encoder's
output, replaces a missing text's sequence there, and the raw ids of that sample are never read.

Sizes: a small random-initialised config by default (``text_config`` overrides any of its keys);
``pretrained_path`` loads local weights with ``from_pretrained(path, local_files_only=True)``:
nothing is ever downloaded. :func:`config_record` keeps a model's config as plain data (the
structural keys in :data:`BERT_KEYS` / :data:`T5_KEYS`), which rebuilds it with random weights that
the backbone file then fills. ``transformers`` is imported only when one of these is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "BERT_KEYS",
    "T5_KEYS",
    "BertLayers",
    "BertTextEncoder",
    "T5TokenEncoder",
    "build_bert",
    "build_t5_config",
    "check_token_input",
    "config_record",
    "load_pretrained",
    "masked_mean",
    "valid_steps",
]

BERT_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
    "layer_norm_eps", "pad_token_id",
)  # fmt: skip
"""The ``BertConfig`` keys a backbone records (and a ``text_config`` may set)."""
T5_KEYS = (
    "vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "relative_attention_num_buckets",
    "relative_attention_max_distance", "dropout_rate", "layer_norm_epsilon", "feed_forward_proj", "pad_token_id",
)  # fmt: skip
"""The ``T5Config`` keys a backbone records (and a ``text_config`` may set)."""


def check_token_input(x: Any, vocab_size: int, name: str = "text") -> None:
    """Raise a clear error unless ``x`` is an integer tensor ``(B, 3, T)`` of ids below ``vocab_size``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} token ids must be a torch.Tensor (B, 3, T), got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(
            f"{name} must be token ids, an integer tensor (B, 3, T) (ids, attention mask, segment ids), got dtype "
            f"{x.dtype}: this backbone's text_encoder reads ids (text features need text_encoder = \"features\")"
        )
    if x.dim() != 3 or x.shape[1] != 3 or x.shape[2] == 0:
        raise ValueError(f"{name} token ids must have shape (B, 3, T) (ids, attention mask, segment ids), got "
                         f"{tuple(x.shape)}")
    ids = x[:, 0]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{name} token ids must lie in [0, {vocab_size}) (the text encoder's vocabulary), got "
                         f"[{int(ids.min())}, {int(ids.max())}]")


def valid_steps(h: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` bool: the steps of an encoder output ``(B, T, D)`` that are not exactly zero."""
    return h.ne(0).any(dim=-1)


def masked_mean(h: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` → ``(B, D)``: the mean over the non-zero steps (MISA's masked mean of BERT's
    states for a real text; all steps of a generated one; 0 for an empty one)."""
    return h.sum(dim=1) / valid_steps(h).sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)


def config_record(config: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """A transformers config as plain data: the structural ``keys`` (ints, floats, strings)."""
    return {k: getattr(config, k) for k in keys if hasattr(config, k)}


def _check_keys(text_config: dict[str, Any] | None, keys: tuple[str, ...], kind: str) -> dict[str, Any]:
    given = dict(text_config or {})
    unknown = sorted(set(given) - set(keys))
    if unknown:
        raise KeyError(f"text_config has key(s) {unknown} that a {kind} config does not take here; allowed: {list(keys)}")
    for k, v in given.items():
        if not isinstance(v, (int, float, str)) or isinstance(v, bool):
            raise TypeError(f"text_config[{k!r}] must be a number or a string (plain data), got {v!r}")
    return given


def load_pretrained(cls: Any, path: str, **kwargs: Any) -> nn.Module:
    """``cls.from_pretrained(path, local_files_only=True)``; a missing or unusable directory is an
    error that names it (weights are never downloaded)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(
            f"pretrained_path {str(p)!r} is not a directory; give a local directory written by save_pretrained "
            "(config.json + model.safetensors): weights are never downloaded"
        )
    try:
        return cls.from_pretrained(str(p), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"pretrained_path {str(p)!r}: cannot load {cls.__name__} weights from it: {e}") from e


def build_bert(vocab_size: int, defaults: dict[str, Any], text_config: dict[str, Any] | None = None,
               pretrained_path: str | None = None) -> nn.Module:
    """A ``BertModel`` without its pooler: from ``pretrained_path`` (local), else random-initialised
    from ``defaults`` overridden by ``text_config``; its vocabulary must hold ``vocab_size`` ids."""
    from transformers import BertConfig, BertModel

    given = _check_keys(text_config, BERT_KEYS, "BERT")
    if pretrained_path is not None:
        if given:
            raise ValueError(f"text_config {given} and pretrained_path are both given; the weights fix the sizes")
        bert = load_pretrained(BertModel, pretrained_path, add_pooling_layer=False)
    else:
        cfg = {"vocab_size": int(vocab_size), **defaults, **given}
        if cfg["hidden_size"] % cfg["num_attention_heads"]:
            raise ValueError(f"BERT hidden_size {cfg['hidden_size']} must be divisible by num_attention_heads "
                             f"{cfg['num_attention_heads']}")
        bert = BertModel(BertConfig(**cfg), add_pooling_layer=False)
    if bert.config.vocab_size < vocab_size:
        raise ValueError(f"the BERT's vocabulary has {bert.config.vocab_size} ids, the data's text {vocab_size}")
    return bert


def build_t5_config(vocab_size: int, defaults: dict[str, Any], text_config: dict[str, Any] | None = None) -> Any:
    """A random-init ``T5Config`` for token ids: ``defaults`` overridden by ``text_config``."""
    from transformers import T5Config

    cfg = {"vocab_size": int(vocab_size), **defaults, **_check_keys(text_config, T5_KEYS, "T5")}
    if cfg["vocab_size"] < vocab_size:
        raise ValueError(f"text_config vocab_size {cfg['vocab_size']} is below the data's {vocab_size} ids")
    return T5Config(**cfg)


class BertLayers(nn.Module):
    """BERT's transformer layers: ``(B, T, H)`` and a key-padding mask ``(B, T)`` (True = pad) → ``(B, T, H)``."""

    def __init__(self, encoder: nn.Module, config: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.bert_config = config

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        keep = None if key_padding_mask is None else (~key_padding_mask).long()
        mask = create_bidirectional_mask(config=self.bert_config, inputs_embeds=x, attention_mask=keep)
        return self.encoder(x, attention_mask=mask).last_hidden_state


class BertTextEncoder(nn.Module):
    """Token ids ``(B, 3, T)`` → BERT's last hidden states ``(B, T, H)``, padding steps (and an
    empty text's every step) exactly 0.

    The BERT's ``embeddings`` and its layers (``layers``, a :class:`BertLayers`) are its submodules;
    ``config`` is the ``BertConfig``.
    """

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.embeddings = bert.embeddings
        self.layers = BertLayers(bert.encoder, bert.config)
        self.config = bert.config
        self.out_dim = int(bert.config.hidden_size)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``text: (B, 3, T)`` ids, attention mask, segment ids → ``(B, T, H)``."""
        ids, mask, segments = text[:, 0], text[:, 1], text[:, 2]
        keep = mask.bool()
        empty = ~keep.any(dim=1, keepdim=True)  # no tokens (zero-filled): attend anywhere, output 0 below
        h = self.layers(self.embeddings(input_ids=ids, token_type_ids=segments), ~(keep | empty))
        return h * keep[..., None].to(h.dtype)


class T5TokenEncoder(nn.Module):
    """Token ids ``(B, 3, T)`` → T5 token embeddings ``(B, T, d)``, padding steps exactly 0.

    ``embed`` is the T5's input embedding (shared with its encoder, so pre-trained weights are read).
    """

    def __init__(self, embed: nn.Embedding) -> None:
        super().__init__()
        self.embed = embed
        self.out_dim = int(embed.embedding_dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``text: (B, 3, T)`` → ``(B, T, d)``."""
        h = self.embed(text[:, 0])
        return h * text[:, 1, :, None].bool().to(h.dtype)

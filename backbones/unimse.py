"""UniMSE: unified multimodal sentiment analysis and emotion recognition (Hu et al., EMNLP 2022).

Data path; ``text`` is required, every other modality ``m`` (by default audio, vision) is encoded
by an LSTM:

1. ``text_proj``: Linear ``D_t → d_model``, the text features as T5 ``inputs_embeds`` ``(B, T_t, d)``.
   With ``text_encoder="t5"`` the text is token ids ``(B, 3, T)`` (MMSA's ``text_bert`` form), as
   UniMSE feeds its T5: ``text_encoder`` looks them up in the T5's own token embeddings (padding
   steps 0; see :mod:`.text_encoders`), ``text_proj`` is then the identity (the hook point of the
   text's sequence), and the T5 masks the padding. MMGM sits at ``text_encoder``'s output.
2. ``enc[m]``: UniMSE's ``RNNEncoder``: ``rnn`` (LSTM) → final state → dropout → ``out`` (Linear)
   → ``(B, d_m)``.
3. ``fusion``: a T5 encoder (``transformers.T5EncoderModel``) whose last ``fusion_layers``
   blocks carry a pre-trained modality fusion (PMF) adapter after their feed-forward sublayer:
   the block's hidden states ``(B, T, d)`` are concatenated with the non-text vectors broadcast
   over time, ``x = [h; a; v]``, then ``x + up(σ(down(x)))`` and a Linear back to ``d``
   (UniMSE's default ``ffn`` adapter; adapter width 64, down/up initialised N(0, 1e-3)).
4. ``head``: the mean of the encoder states → Linear → tanh → dropout → Linear → ``(B, out_dim)``.

The T5 is a small random-init one by default (``d_model=64``, 4 layers, 4 heads, ``d_ff=128``);
``pretrained_path=`` loads local T5 weights with ``T5EncoderModel.from_pretrained(path,
local_files_only=True)`` (nothing is downloaded), and the size keywords are then taken from it.

Departures from UniMSE: with ``text_encoder="t5"`` MMGM replaces a missing text at the T5's
input embeddings (UniMSE's T5 is text encoder and fusion network in one, and ``transformers``
has no stable API to stop it before its first PMF block). UniMSE casts MSA and ERC labels into one text format and generates it
with the full T5 (encoder + decoder, cross-entropy on the label tokens); here the decoder is
dropped and a regression/classification head reads the mean-pooled encoder states. Text enters
as pre-extracted features through a Linear instead of T5 token embeddings. The optional
inter-modality contrastive loss (off in the released configuration) is not included, so this
backbone has no auxiliary loss. Sequences are read at full length (no packing), with no
attention mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from promptkit.hookspec import HookSpec, ModalityEncoder, SignalTarget, TypeTarget, register_hook_spec

from ._registry import register_backbone
from .base import MSABackbone, Task
from .encoders import LSTMVectorEncoder, check_batch
from .text_encoders import T5_KEYS, T5TokenEncoder, build_t5_config, config_record, load_pretrained, valid_steps

__all__ = ["PMFAdapter", "PMFFeedForward", "T5Fusion", "UniMSE", "unimse"]

DEFAULT_FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}


class PMFAdapter(nn.Module):
    """UniMSE's PMF adapter: hidden states ``(B, T, d)`` and a condition ``(B, C)`` → ``(B, T, d)``.

    ``x = [h; c broadcast over T]``; ``x + up(sigmoid(down(x)))``; Linear ``(d + C) → d``.
    """

    def __init__(self, d_model: int, cond_dim: int, adapter_size: int = 64, init_std: float = 1e-3) -> None:
        super().__init__()
        in_dim = d_model + cond_dim
        self.cond_dim = int(cond_dim)
        self.down = nn.Linear(in_dim, adapter_size)
        self.up = nn.Linear(adapter_size, in_dim)
        self.out = nn.Linear(in_dim, d_model)
        for layer in (self.down, self.up):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if condition.shape != (h.shape[0], self.cond_dim):
            raise ValueError(
                f"PMF condition must have shape ({h.shape[0]}, {self.cond_dim}), got {tuple(condition.shape)}"
            )
        x = torch.cat([h, condition[:, None, :].expand(-1, h.shape[1], -1).to(h.dtype)], dim=-1)
        return self.out(x + self.up(torch.sigmoid(self.down(x))))


class PMFFeedForward(nn.Module):
    """A T5 block's feed-forward sublayer followed by a PMF adapter; ``(B, T, d) → (B, T, d)``.

    It replaces the block's last sublayer, so the T5 code calls it with the hidden states only;
    the condition is set by :class:`T5Fusion` for the duration of one forward.
    """

    def __init__(self, ff: nn.Module, adapter: PMFAdapter) -> None:
        super().__init__()
        self.ff = ff
        self.adapter = adapter
        self.condition: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.condition is None:
            raise RuntimeError("PMFFeedForward runs inside T5Fusion.forward, which sets its condition")
        return self.adapter(self.ff(hidden_states), self.condition)


class T5Fusion(nn.Module):
    """A T5 encoder with PMF adapters in its last blocks: ``(B, T, d), (B, C) → (B, T, d)``.

    Args:
        t5: a ``transformers.T5EncoderModel``; its last ``fusion_layers`` blocks get adapters.
        cond_dim: C, the size of the concatenated non-text vectors.
        fusion_layers: how many of the last blocks fuse (UniMSE: 3; all blocks if fewer).
        adapter_size: the adapter bottleneck (UniMSE: 64).
    """

    def __init__(self, t5: nn.Module, cond_dim: int, fusion_layers: int = 3, adapter_size: int = 64) -> None:
        super().__init__()
        self.t5 = t5
        self.d_model = int(t5.config.d_model)
        blocks = t5.encoder.block
        first = max(len(blocks) - int(fusion_layers), 0)
        self.fusion_blocks = list(range(first, len(blocks)))
        for i in self.fusion_blocks:
            sub = blocks[i].layer
            sub[len(sub) - 1] = PMFFeedForward(sub[len(sub) - 1], PMFAdapter(self.d_model, cond_dim, adapter_size))

    def _pmf(self) -> list[PMFFeedForward]:
        return [m for m in self.t5.modules() if isinstance(m, PMFFeedForward)]

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x: (B, T, d)`` the inputs_embeds, ``condition: (B, C)`` → last hidden states ``(B, T, d)``;
        ``key_padding_mask`` ``(B, T)`` True at padded steps (None: no mask)."""
        pmf = self._pmf()
        for m in pmf:
            m.condition = condition
        attention = None if key_padding_mask is None else (~key_padding_mask).long()
        try:
            return self.t5(inputs_embeds=x, attention_mask=attention).last_hidden_state
        finally:
            for m in pmf:
                m.condition = None


def _build_t5(pretrained_path: str | None, vocab: int | None = None, text_config: dict | None = None,
              **sizes) -> nn.Module:
    """The T5 encoder: local weights, or random-init from ``sizes``; ``vocab`` (token-id text) sets
    its vocabulary, overridden by ``text_config``."""
    from transformers import T5Config, T5EncoderModel

    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.exists():
            raise FileNotFoundError(f"pretrained_path {str(path)!r} does not exist (weights are never downloaded)")
        t5 = load_pretrained(T5EncoderModel, str(path))
        if vocab is not None and t5.config.vocab_size < vocab:
            raise ValueError(f"the T5's vocabulary has {t5.config.vocab_size} ids, the data's text {vocab}")
        return t5
    d_model, num_heads = sizes["d_model"], sizes["num_heads"]
    if d_model % num_heads:
        raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
    if vocab is not None:
        defaults = dict(d_model=d_model, d_kv=d_model // num_heads, d_ff=sizes["d_ff"], num_layers=sizes["num_layers"],
                        num_heads=num_heads, dropout_rate=sizes["dropout"], feed_forward_proj="relu")
        return T5EncoderModel(build_t5_config(vocab, defaults, text_config))
    config = T5Config(
        vocab_size=8,  # unused: the encoder is fed inputs_embeds
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=sizes["d_ff"],
        num_layers=sizes["num_layers"],
        num_heads=num_heads,
        dropout_rate=sizes["dropout"],
        feed_forward_proj="relu",
    )
    return T5EncoderModel(config)


class UniMSE(MSABackbone):
    """UniMSE's encoder side: T5 with PMF adapters fusing LSTM-encoded non-text modalities.

    Args:
        feature_dims: feature size per modality; must include ``"text"``.
        out_dim: 1 for regression, else the number of logits.
        task: ``"regression"`` or ``"classification"``.
        d_model, num_layers, num_heads, d_ff, t5_dropout: the random-init T5's sizes (ignored,
            and read from the weights, when ``pretrained_path`` is given).
        pretrained_path: a local directory of T5 weights (``save_pretrained`` format).
        fusion_layers: how many of the last T5 blocks carry PMF (UniMSE: 3).
        adapter_size: the PMF bottleneck (UniMSE: 64).
        rnn_hidden, rnn_out: LSTM hidden size and vector size of each non-text modality (UniMSE: 32, 32).
        rnn_dropout: dropout on the LSTM's final state (UniMSE: 0.3).
        head_dropout: dropout inside the head.
        text_encoder: ``"features"`` (text features through ``text_proj``) or ``"t5"`` (token ids
            through the T5's own embeddings; ``feature_dims["text"]`` is then the vocabulary size).
        text_config: ``T5Config`` keys over the sizes above (``text_encoder="t5"``); :meth:`config`
            records the whole one, so a pre-trained T5 rebuilds without its directory.
    """

    def __init__(
        self,
        feature_dims: dict[str, int] | None = None,
        out_dim: int = 1,
        task: Task = "regression",
        d_model: int = 64,
        num_layers: int = 4,
        num_heads: int = 4,
        d_ff: int = 128,
        t5_dropout: float = 0.1,
        pretrained_path: str | None = None,
        fusion_layers: int = 3,
        adapter_size: int = 64,
        rnn_hidden: int = 32,
        rnn_out: int = 32,
        rnn_dropout: float = 0.3,
        head_dropout: float = 0.1,
        text_encoder: Literal["features", "t5"] = "features",
        text_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(dict(DEFAULT_FEATURE_DIMS) if feature_dims is None else feature_dims, out_dim, task)
        if "text" not in self.feature_dims:
            raise KeyError(f"UniMSE needs a 'text' modality (it feeds the T5 encoder); got {list(self.modalities)}")
        for name, p in [("t5_dropout", t5_dropout), ("rnn_dropout", rnn_dropout), ("head_dropout", head_dropout)]:
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if fusion_layers < 1:
            raise ValueError(f"fusion_layers must be >= 1, got {fusion_layers}")
        self.others = tuple(m for m in self.modalities if m != "text")
        if text_encoder not in ("features", "t5"):
            raise ValueError(f"text_encoder must be 'features' or 't5', got {text_encoder!r}")
        if text_encoder == "features" and text_config is not None:
            raise ValueError("text_config configures text_encoder = 't5'; it is 'features'")
        if text_config is not None and pretrained_path is not None:
            raise ValueError(f"text_config {text_config} and pretrained_path are both given; the weights fix the sizes")
        self.token_modalities = ("text",) if text_encoder == "t5" else ()
        self.pretrained_path = None if pretrained_path is None else str(pretrained_path)
        t5 = _build_t5(
            self.pretrained_path, self.feature_dims["text"] if self.token_modalities else None, text_config,
            d_model=d_model, num_layers=num_layers, num_heads=num_heads, d_ff=d_ff, dropout=t5_dropout,
        )  # fmt: skip
        c = t5.config
        self.t5_sizes = dict(
            d_model=int(c.d_model), num_layers=int(c.num_layers), num_heads=int(c.num_heads), d_ff=int(c.d_ff),
            t5_dropout=float(c.dropout_rate),
        )  # fmt: skip
        self.sizes = dict(
            fusion_layers=int(fusion_layers), adapter_size=int(adapter_size), rnn_hidden=int(rnn_hidden),
            rnn_out=int(rnn_out), rnn_dropout=float(rnn_dropout), head_dropout=float(head_dropout),
        )  # fmt: skip
        d = self.t5_sizes["d_model"]

        if self.token_modalities:
            self.text_encoder = T5TokenEncoder(t5.get_input_embeddings())
            self.text_proj: nn.Module = nn.Identity()  # the text sequence's hook point
        else:
            self.text_proj = nn.Linear(self.feature_dims["text"], d)
        self.enc = nn.ModuleDict(
            {m: LSTMVectorEncoder(self.feature_dims[m], rnn_hidden, rnn_out, dropout=rnn_dropout) for m in self.others}
        )
        self.fusion = T5Fusion(t5, rnn_out * len(self.others), fusion_layers, adapter_size)
        self.head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Dropout(head_dropout), nn.Linear(d, self.out_dim))

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        """``text=(B, T_t, D_t), audio=(B, T_a, D_a), vision=(B, T_v, D_v)`` → ``(B, out_dim)``."""
        self.check_features(features)
        batch = check_batch(features)
        pad = None
        if self.token_modalities:  # padding read from the embeddings (0 there), never from raw ids
            h = self.text_encoder(features["text"])  # (B, T_t, d)
            pad = ~valid_steps(h)
            pad = pad & ~pad.all(dim=1, keepdim=True)  # an empty (zero-filled) text attends to all its steps
            text = self.text_proj(h)
        else:
            text = self.text_proj(features["text"])  # (B, T_t, d)
        vecs = [self.enc[m](features[m]) for m in self.others]  # (B, d_m) each
        condition = torch.cat(vecs, dim=-1) if vecs else text.new_zeros(batch, 0)
        if pad is None:
            hidden = self.fusion(text, condition=condition)  # (B, T_t, d)
            return self.head(hidden.mean(dim=1))
        hidden = self.fusion(text, condition=condition, key_padding_mask=pad)
        keep = (~pad).to(hidden.dtype)[..., None]
        return self.head((hidden * keep).sum(1) / keep.sum(1))

    def config(self) -> dict:
        return dict(
            feature_dims=dict(self.feature_dims),
            out_dim=self.out_dim,
            task=self.task,
            **self.t5_sizes,
            pretrained_path=None if self.token_modalities else self.pretrained_path,
            **self.sizes,
            **self._text_config(),
        )

    def _text_config(self) -> dict[str, Any]:
        """The text encoder's keywords (none for text features, so those configs read as before);
        the T5's config as plain data, whose weights are in the backbone's own file."""
        if not self.token_modalities:
            return {}
        return dict(text_encoder="t5", text_config=config_record(self.fusion.t5.config, T5_KEYS))


@register_backbone
def unimse(**cfg) -> UniMSE:
    """UniMSE with a small random-init T5 (``d_model=64``, 4 layers, PMF in the last 3) and
    UniMSE's LSTM sizes; ``pretrained_path=`` loads local T5 weights; any :class:`UniMSE` keyword."""
    return UniMSE(**cfg)


@register_hook_spec(UniMSE)
def _unimse_hook_spec(model: UniMSE) -> HookSpec:
    """MPLMM Sec. 4.5 puts UniMSE's prompts into its multimodal fusion layers.

    UniMSE fuses inside the T5 encoder (PMF in its last blocks), so that encoder is its fusion
    network; the prompt tokens enter at its input and every block, PMF blocks included, attends
    to them. (Entering at the first PMF block only would mean rebuilding T5's relative position
    bias mid-stack, which ``transformers`` does not expose as a stable API.)

    - Missing-signal prompts: text on its projected sequence ``text_proj`` (BTD, eq. 3's place);
      each other modality on its encoder's output vector ``enc.<m>.out`` (BD), the vector PMF fuses.
    - Missing-type prompts: extra leading tokens of ``fusion`` (width ``d_model``), trimmed
      before the pooled head.
    - MMGM works on the forward keywords; the head trains with the prompts; a modality's encoder
      for CGGM: ``text_proj`` for text (the T5 mixes in the other modalities), ``enc.<m>`` otherwise.
    - With ``text_encoder="t5"`` MMGM works on the text at ``text_encoder`` (the T5 token
      embeddings, BTD); ``text_proj`` (the identity there) keeps the signal hook after it, and the
      type target's key-padding mask grows with the prompt tokens.
    """
    d, r, mods = model.t5_sizes["d_model"], model.sizes["rnn_out"], model.modalities
    tokens = model.token_modalities
    signal = {
        m: SignalTarget(path="text_proj", layout="BTD", width=d)
        if m == "text"
        else SignalTarget(path=f"enc.{m}.out", layout="BD", width=r)
        for m in mods
    }
    encoders = {
        m: ModalityEncoder(output="text_proj", layout="BTD", width=d,
                           params=["text_encoder" if m in tokens else "text_proj"])
        if m == "text"
        else ModalityEncoder(output=f"enc.{m}", layout="BD", params=[f"enc.{m}"], width=r)
        for m in mods
    }
    return HookSpec(
        features={m: {"path": "text_encoder", "layout": "BTD", "width": d} if m in tokens else m for m in mods},
        signal=signal,
        type=[TypeTarget(path="fusion", layout="BTD", arg=0, width=d,
                         padding_mask_arg="key_padding_mask" if tokens else None)],
        trainable=["head"],
        encoders=encoders,
    )

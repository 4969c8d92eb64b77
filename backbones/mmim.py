"""MMIM: MultiModal InfoMax (Han, Chen, Poria, EMNLP 2021).

Data path; ``text`` is required, every other modality ``m`` (by default audio, vision) is encoded
by an LSTM:

1. ``text_enc``: the text encoder, ``(B, T_t, D_t) → (B, d_t)``: ``proj`` (Linear, + sinusoidal
   positions) → ``encoder`` (a small transformer) → pooled. It stands in for MMIM's fine-tuned
   BERT when the text is pre-extracted features. With ``text_encoder="bert"`` the text is token
   ids ``(B, 3, T)`` (MMSA's ``text_bert``) read by MMIM's own encoder instead: ``text_encoder`` (a
   ``BertModel``, small and random-initialised unless ``pretrained_path`` names local weights; see
   :mod:`.text_encoders`) → its [CLS] state (``text_pool="first"``, the default there) →
   ``text_out`` (the identity: the text vector's hook point) → ``(B, H)``; MMGM sits at the
   BERT's output.
2. ``enc[m]``: MMIM's ``RNNEncoder``: ``rnn`` (single-direction LSTM) → final state → dropout →
   ``out`` (Linear) → ``(B, d_m)``.
3. ``fusion``: the SubNet over ``[text, m_1, …]``: dropout → tanh(``hidden1``) → tanh(``hidden2``)
   gives the fusion vector ``z`` ``(B, d_f)``; ``out`` maps it to ``(B, out_dim)``.

Mutual-information terms, computed in training mode:

- ``lld``: the Barber-Agakov bound's likelihood term E[log q(y_m | x_text)] for each non-text
  modality, with q a diagonal Gaussian whose mean and log-variance are MLPs of the text vector
  (``mmilb[m]``);
- ``entropy``: the BA bound's entropy term H(y_m), a Gaussian estimate ``½ logdet Σ`` of
  ``entropy_prj(y_m)`` over this batch plus the previous training batch (MMIM's memory of size 1).
  With ``labels=`` given, as MMIM does, positive and negative samples are estimated apart and
  averaged; without labels (the promptkit engine) one Gaussian covers the batch;
- ``nce``: the CPC/InfoNCE bound between ``z`` and each modality's vector (``cpc[m]``), summed.

``auxiliary_loss() = alpha · nce − beta · lld − beta · entropy`` (MMIM's MOSI settings
``alpha = beta = 0.1``, its ``--contrast`` run).

MMIM's two-stage step and how promptkit maps it. MMIM alternates, every epoch, (1) a pass that
maximises ``lld`` with respect to the q networks only, and (2) a pass on ``task + alpha·nce −
beta·lld − beta·H`` with respect to everything else. promptkit's engine takes one optimizer step
per batch on ``task + auxiliary_loss()`` over all trainable parameters, which merges the two:
the q networks then follow ``−beta·lld`` (the same direction as stage 1, a smaller weight). A
caller who wants MMIM's separate first stage runs, per batch, a training forward and
``model.mi_loss().backward()`` with an optimizer over :meth:`MMIM.mi_parameters` only.

Departures from the released code, each a fix: the Gaussian log-likelihood keeps its
``−½ log σ²`` term (the released ``lld`` drops it, so stage 1 can push it to its maximum, 0, by
inflating the variance, whatever the text says), the log-variance goes through the configured ``Tanh`` (the released
code builds it but never applies it), and a ``1e-4·I`` jitter keeps ``logdet`` finite on small
batches. ``entropy_prj`` has no trainable parameters, as in effect in the released code, where
neither stage's optimizer steps it. Sequences are read at full length (no packing).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from promptkit.hookspec import HookSpec, ModalityEncoder, SignalTarget, TypeTarget, register_hook_spec

from ._registry import register_backbone
from .base import MSABackbone, Task
from .encoders import LSTMVectorEncoder, check_batch
from .mmim_bounds import CPC, MMILB, gaussian_entropy
from .text_encoders import BERT_KEYS, BertTextEncoder, build_bert, config_record, masked_mean
from .layers import sinusoidal_table

__all__ = ["CPC", "MMIM", "MMILB", "TextEncoder", "gaussian_entropy", "mmim"]

DEFAULT_FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}


class TextEncoder(nn.Module):
    """Pre-extracted text features → a small transformer → an utterance vector ``(B, d)``.

    ``proj`` maps ``(B, T, D_t) → (B, T, d)``; sinusoidal positions are added; ``encoder`` (its
    input a single ``(B, T, d)`` sequence) contextualises; the output is pooled: ``"first"`` reads
    step 0 (BERT's [CLS], what MMIM reads), ``"mean"`` averages the steps (the default: GloVe-style
    features have no [CLS] step).
    """

    def __init__(
        self, in_dim: int, dim: int, layers: int = 1, heads: int = 4, ff: int = 128, dropout: float = 0.1,
        pool: str = "mean",
    ) -> None:  # fmt: skip
        super().__init__()
        if pool not in ("first", "mean"):
            raise ValueError(f"text pool must be 'first' or 'mean', got {pool!r}")
        if dim % heads:
            raise ValueError(f"text_dim {dim} must be divisible by text_heads {heads}")
        self.dim, self.pool = int(dim), pool
        self.proj = nn.Linear(in_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ff, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, D_t)`` → ``(B, d)``."""
        h = self.proj(x)
        h = h + sinusoidal_table(h.shape[1], self.dim, device=h.device).to(h.dtype)
        h = self.encoder(h)
        return h[:, 0] if self.pool == "first" else h.mean(dim=1)


class SubNet(nn.Module):
    """MMIM's fusion MLP: ``(B, F) → (z: (B, d_f), out: (B, out_dim))``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.hidden1 = nn.Linear(in_dim, hidden)
        self.hidden2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.tanh(self.hidden2(torch.tanh(self.hidden1(self.drop(x)))))
        return z, self.out(z)


class MMIM(MSABackbone):
    """MultiModal InfoMax with BA (MMILB) and CPC mutual-information bounds.

    Args:
        feature_dims: feature size per modality; must include ``"text"``.
        out_dim: 1 for regression, else the number of logits.
        task: ``"regression"`` or ``"classification"``.
        text_dim: width of the text encoder and of the text vector (MMIM: BERT's 768).
        text_layers, text_heads, text_ff, text_dropout: the text transformer's sizes.
        text_pool: ``"mean"`` or ``"first"`` (MMIM reads BERT's [CLS], step 0); None: ``"mean"``
            for text features, ``"first"`` for ``text_encoder="bert"``.
        rnn_hidden: LSTM hidden size of every non-text encoder (MMIM: 16).
        rnn_out: size of every non-text vector (MMIM: 16); at least 4.
        rnn_layers: LSTM layers (MMIM: 1); rnn_bidirectional: MMIM's default False.
        rnn_dropout: dropout on the LSTM's final state (MMIM: 0.1 audio and vision).
        fusion_hidden: the SubNet width d_f (MMIM: 128).
        fusion_dropout: dropout on the SubNet input (MMIM: 0.1).
        alpha: weight of the CPC term (MMIM: 0.1). beta: weight of the BA terms (MMIM: 0.1).
        text_encoder: ``"features"`` (the small transformer over text features) or ``"bert"``
            (token ids through a BERT sized by ``text_dim``, ``text_layers``, ``text_heads``,
            ``text_ff``, ``text_dropout``; ``feature_dims["text"]`` is then the vocabulary size).
        text_config: ``BertConfig`` keys over those sizes; :meth:`config` records the whole one.
        pretrained_path: a local directory of BERT weights (``save_pretrained`` format).

    After a training-mode forward, ``loss_parts`` holds the unweighted ``{"nce", "lld",
    "entropy"}`` and :meth:`auxiliary_loss` the weighted sum; in eval mode both are empty.
    """

    def __init__(
        self,
        feature_dims: dict[str, int] | None = None,
        out_dim: int = 1,
        task: Task = "regression",
        text_dim: int = 64,
        text_layers: int = 1,
        text_heads: int = 4,
        text_ff: int = 128,
        text_dropout: float = 0.1,
        text_pool: str | None = None,
        rnn_hidden: int = 16,
        rnn_out: int = 16,
        rnn_layers: int = 1,
        rnn_bidirectional: bool = False,
        rnn_dropout: float = 0.1,
        fusion_hidden: int = 128,
        fusion_dropout: float = 0.1,
        alpha: float = 0.1,
        beta: float = 0.1,
        text_encoder: Literal["features", "bert"] = "features",
        text_config: dict[str, Any] | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__(dict(DEFAULT_FEATURE_DIMS) if feature_dims is None else feature_dims, out_dim, task)
        if "text" not in self.feature_dims:
            raise KeyError(f"MMIM needs a 'text' modality (its MI bounds start from text); got {list(self.modalities)}")
        dropouts = {"text_dropout": text_dropout, "rnn_dropout": rnn_dropout, "fusion_dropout": fusion_dropout}
        for name, p in dropouts.items():
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if text_encoder not in ("features", "bert"):
            raise ValueError(f"text_encoder must be 'features' or 'bert', got {text_encoder!r}")
        if text_encoder == "features" and (text_config is not None or pretrained_path is not None):
            raise ValueError("text_config and pretrained_path configure text_encoder = 'bert'; it is 'features'")
        self.token_modalities = ("text",) if text_encoder == "bert" else ()
        text_pool = text_pool or ("first" if self.token_modalities else "mean")
        if text_pool not in ("first", "mean"):
            raise ValueError(f"text pool must be 'first' or 'mean', got {text_pool!r}")
        bert = None
        if self.token_modalities:
            defaults = dict(hidden_size=int(text_dim), num_hidden_layers=int(text_layers),
                            num_attention_heads=int(text_heads), intermediate_size=int(text_ff),
                            hidden_dropout_prob=float(text_dropout), attention_probs_dropout_prob=float(text_dropout),
                            max_position_embeddings=512)
            bert = build_bert(self.feature_dims["text"], defaults, text_config, pretrained_path)
            text_dim = int(bert.config.hidden_size)
        self.sizes = dict(
            text_dim=int(text_dim), text_layers=int(text_layers), text_heads=int(text_heads), text_ff=int(text_ff),
            text_dropout=float(text_dropout), text_pool=text_pool, rnn_hidden=int(rnn_hidden), rnn_out=int(rnn_out),
            rnn_layers=int(rnn_layers), rnn_bidirectional=bool(rnn_bidirectional), rnn_dropout=float(rnn_dropout),
            fusion_hidden=int(fusion_hidden), fusion_dropout=float(fusion_dropout),
        )  # fmt: skip
        self.alpha, self.beta = float(alpha), float(beta)
        self.others = tuple(m for m in self.modalities if m != "text")

        if bert is not None:
            self.text_encoder = BertTextEncoder(bert)
            self.text_out = nn.Identity()  # the text vector (B, H): its signal hook point
        else:
            self.text_enc = TextEncoder(
                self.feature_dims["text"], text_dim, text_layers, text_heads, text_ff, text_dropout, text_pool
            )
        self.enc = nn.ModuleDict(
            {
                m: LSTMVectorEncoder(
                    self.feature_dims[m], rnn_hidden, rnn_out, rnn_layers, rnn_bidirectional, rnn_dropout
                )
                for m in self.others
            }
        )
        self.mmilb = nn.ModuleDict({m: MMILB(text_dim, rnn_out) for m in self.others})
        widths = {m: (text_dim if m == "text" else rnn_out) for m in self.modalities}
        self.cpc = nn.ModuleDict({m: CPC(widths[m], fusion_hidden) for m in self.modalities})
        self.fusion = SubNet(sum(widths.values()), fusion_hidden, self.out_dim, fusion_dropout)

        self.loss_parts: dict[str, torch.Tensor] = {}
        self._lld: torch.Tensor | None = None
        self._memory: dict[str, dict[str, torch.Tensor]] = {}

    def forward(self, labels: torch.Tensor | None = None, **features: torch.Tensor) -> torch.Tensor:
        """``text=(B, T_t, D_t), audio=…, vision=…`` → ``(B, out_dim)``.

        Args:
            labels: optional ``(B,)`` or ``(B, 1)`` sentiment scores; in training they split the
                entropy estimate by polarity, as MMIM does. Never used for the prediction.
        """
        self.check_features(features)
        batch = check_batch(features)
        if labels is not None and labels.shape[0] != batch:
            raise ValueError(f"labels have {labels.shape[0]} rows but the batch has {batch} samples")
        vecs = {"text": self._text_vector(features["text"])}
        vecs.update({m: self.enc[m](features[m]) for m in self.others})
        z, out = self.fusion(torch.cat([vecs[m] for m in self.modalities], dim=-1))

        if self.training:
            self.loss_parts = self._mi_terms(vecs, z, labels)
            self._lld = self.loss_parts["lld"]
            p = self.loss_parts
            self._aux_loss = self.alpha * p["nce"] - self.beta * p["lld"] - self.beta * p["entropy"]
        else:
            self.loss_parts, self._aux_loss, self._lld = {}, None, None
        return out

    def _text_vector(self, text: torch.Tensor) -> torch.Tensor:
        """``(B, d_t)``: the small transformer's, or the BERT's [CLS] state (or mean over its
        non-zero steps) through ``text_out``."""
        if not self.token_modalities:
            return self.text_enc(text)
        h = self.text_encoder(text)  # (B, T, H), padding 0
        return self.text_out(h[:, 0] if self.sizes["text_pool"] == "first" else masked_mean(h))

    def _mi_terms(
        self, vecs: dict[str, torch.Tensor], z: torch.Tensor, labels: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        zero = z.new_zeros(())
        lld, entropy = zero, zero
        for m in self.others:
            lld = lld + self.mmilb[m].log_likelihood(vecs["text"], vecs[m])
            h, self._memory[m] = self.mmilb[m].entropy(vecs[m], labels, self._memory.get(m))
            entropy = entropy + h
        nce = sum((self.cpc[m](vecs[m], z) for m in self.modalities), zero)
        return {"nce": nce, "lld": lld, "entropy": entropy}

    def mi_loss(self) -> torch.Tensor:
        """MMIM's first-stage loss, ``−lld`` of the last training forward (minimise it over
        :meth:`mi_parameters` only)."""
        if self._lld is None:
            raise RuntimeError("mi_loss() needs a forward pass in training mode first (call model.train())")
        return -self._lld

    def mi_parameters(self) -> list[nn.Parameter]:
        """The q networks of the BA bounds, the parameters MMIM's first stage updates."""
        return [p for p in self.mmilb.parameters() if p.requires_grad]

    def training_state(self) -> dict[str, torch.Tensor]:
        """The entropy memory (the previous training batch's samples, ``(n, d)`` per group): state
        outside parameters and buffers that the training engine checkpoints so a resumed run
        continues exactly."""
        return {f"{m}.{group}": t for m, groups in self._memory.items() for group, t in groups.items()}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`training_state`'s memory (onto this model's device)."""
        device = next(self.parameters()).device
        memory: dict[str, dict[str, torch.Tensor]] = {}
        for key, t in state.items():
            m, group = key.split(".", 1)
            memory.setdefault(m, {})[group] = t.to(device)
        self._memory = memory

    def config(self) -> dict:
        return dict(
            feature_dims=dict(self.feature_dims),
            out_dim=self.out_dim,
            task=self.task,
            **self.sizes,
            alpha=self.alpha,
            beta=self.beta,
            **self._text_config(),
        )

    def _text_config(self) -> dict[str, Any]:
        """The text encoder's keywords (none for text features, so those configs read as before);
        the BERT's config as plain data, whose weights are in the backbone's own file."""
        if not self.token_modalities:
            return {}
        return dict(text_encoder="bert", text_config=config_record(self.text_encoder.config, BERT_KEYS))


@register_backbone
def mmim(**cfg) -> MMIM:
    """MMIM with CPU-small text encoder defaults and MMIM's MOSI sizes and weights (LSTM 16/16,
    fusion 128, alpha = beta = 0.1); any :class:`MMIM` keyword is accepted."""
    return MMIM(**cfg)


@register_hook_spec(MMIM)
def _mmim_hook_spec(model: MMIM) -> HookSpec:
    """MPLMM Sec. 4.5 puts MMIM's prompts into its modality-specific encoders.

    MMIM fuses late (one MLP over utterance vectors), so its encoders are where each modality is
    modelled over time; that is where the prompts can act.

    - Missing-signal prompts: text on the projected sequence ``text_enc.proj`` (BTD, the input
      projection of eq. 3); each other modality on its encoder's output vector ``enc.<m>.out``
      (BD), since MMIM's LSTMs read the raw features without an input projection.
    - Missing-type prompts: extra leading tokens of the text transformer ``text_enc.encoder``
      (width ``text_dim``) and of every LSTM ``enc.<m>.rnn`` (width ``D_m``, the LSTM reads the raw
      features), trimmed before the readout.
    - MMGM works on the forward keywords; the fusion SubNet's output layer trains with the
      prompts; a modality's encoder for CGGM is ``text_enc`` or ``enc.<m>`` (BD vectors).
    - With ``text_encoder="bert"`` MMGM works on the text at the BERT's output ``text_encoder``
      (BTD); the text's signal prompts join its vector ``text_out`` (BD). The text has no type
      target: the BERT is the feature extractor, whose output MMGM replaces for a missing text, so
      the type prompts go to the other modalities' LSTMs only.
    """
    if model.token_modalities:
        return _mmim_bert_spec(model)
    s, mods = model.sizes, model.modalities
    width = {m: s["text_dim"] if m == "text" else s["rnn_out"] for m in mods}
    # dicts in modality order: the spec's order is the mask's column order
    signal = {
        m: SignalTarget(path="text_enc.proj", layout="BTD", width=width[m])
        if m == "text"
        else SignalTarget(path=f"enc.{m}.out", layout="BD", width=width[m])
        for m in mods
    }
    types = [
        TypeTarget(path="text_enc.encoder", layout="BTD", arg=0, width=s["text_dim"])
        if m == "text"
        else TypeTarget(path=f"enc.{m}.rnn", layout="BTD", arg=0, width=model.feature_dims[m])
        for m in mods
    ]
    enc_path = {m: "text_enc" if m == "text" else f"enc.{m}" for m in mods}
    encoders = {m: ModalityEncoder(output=enc_path[m], layout="BD", params=[enc_path[m]], width=width[m]) for m in mods}
    return HookSpec(
        features={m: m for m in mods},
        signal=signal,
        type=types,
        trainable=["fusion.out"],
        encoders=encoders,
    )


def _mmim_bert_spec(model: MMIM) -> HookSpec:
    """:func:`_mmim_hook_spec` for ``text_encoder="bert"``."""
    s, mods, others = model.sizes, model.modalities, model.others
    width = {m: s["text_dim"] if m == "text" else s["rnn_out"] for m in mods}
    out = {m: "text_out" if m == "text" else f"enc.{m}.out" for m in mods}
    return HookSpec(
        features={m: {"path": "text_encoder", "layout": "BTD", "width": width[m]} if m == "text" else m for m in mods},
        signal={m: SignalTarget(path=out[m], layout="BD", width=width[m]) for m in mods},
        type=[TypeTarget(path=f"enc.{m}.rnn", layout="BTD", arg=0, width=model.feature_dims[m]) for m in others],
        trainable=["fusion.out"],
        encoders={
            m: ModalityEncoder(output="text_out" if m == "text" else f"enc.{m}", layout="BD", width=width[m],
                               params=["text_encoder"] if m == "text" else [f"enc.{m}"])
            for m in mods
        },
    )

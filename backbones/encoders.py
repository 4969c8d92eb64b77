"""Small pieces shared by MISA, MMIM and UniMSE: LSTM sequence encoders and their readout.

Every module here takes a batch-first sequence ``(B, T, D)`` as its single input, so a prompter
can prepend tokens to it (they act as a prefix the recurrence reads first) and trim them from
the output; the readout to an utterance vector happens outside, on the trimmed sequence.

Sequences are read at their full length: the pre-extracted feature sets (MulT/MMSA pickles)
carry no lengths, so, as in MulT, padded steps are part of the sequence. The published MISA and
MMIM pack sequences by their true lengths instead.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LSTMVectorEncoder", "SequenceLSTM", "check_batch", "final_state"]


def check_batch(features: dict[str, torch.Tensor]) -> int:
    """The common batch size of ``features``; a disagreement is an error naming every size."""
    sizes = {m: x.shape[0] for m, x in features.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all modalities need the same batch size, got {sizes}")
    return next(iter(sizes.values()))


class SequenceLSTM(nn.Module):
    """A batch-first LSTM that returns every step: ``(B, T, D_in) → (B, T, dirs·H)``.

    Args:
        in_dim: input feature size D_in.
        hidden_size: H per direction.
        num_layers: stacked LSTM layers.
        bidirectional: run a backward direction too (its half is the second ``H`` features).
        dropout: between stacked layers (ignored with one layer, as in ``nn.LSTM``).
    """

    def __init__(
        self, in_dim: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if min(in_dim, hidden_size, num_layers) < 1:
            raise ValueError(
                f"SequenceLSTM needs positive sizes, got in_dim={in_dim}, hidden_size={hidden_size}, "
                f"num_layers={num_layers}"
            )
        self.in_dim, self.hidden_size = int(in_dim), int(hidden_size)
        self.bidirectional = bool(bidirectional)
        self.lstm = nn.LSTM(
            in_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )

    @property
    def out_dim(self) -> int:
        return self.hidden_size * (2 if self.bidirectional else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, D_in)`` → ``(B, T, out_dim)``."""
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"SequenceLSTM expects (B, T, {self.in_dim}), got {tuple(x.shape)}")
        return self.lstm(x)[0]


def final_state(seq: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The LSTM's final hidden state from its output sequence ``(B, T, dirs·H)`` → ``(B, dirs·H)``.

    The forward direction ends at the last step, the backward one at the first; for an unpacked
    sequence this equals ``h_n`` of the top layer.
    """
    if not bidirectional:
        return seq[:, -1]
    h = seq.shape[-1] // 2
    return torch.cat([seq[:, -1, :h], seq[:, 0, h:]], dim=-1)


class LSTMVectorEncoder(nn.Module):
    """MMIM's and UniMSE's ``RNNEncoder``: LSTM → final hidden state → dropout → Linear.

    ``(B, T, D_in) → (B, out_dim)``. The recurrence is the submodule ``rnn`` (a prompt hook
    point with a single sequence input), the projection ``out``.

    Args:
        in_dim: input feature size.
        hidden_size: LSTM hidden size per direction.
        out_dim: size of the utterance vector.
        num_layers: stacked LSTM layers.
        bidirectional: bidirectional LSTM.
        dropout: on the final state before ``out`` (and between stacked layers).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_size: int,
        out_dim: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.rnn = SequenceLSTM(in_dim, hidden_size, num_layers, bidirectional, dropout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(self.rnn.out_dim, out_dim)
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, D_in)`` → ``(B, out_dim)``."""
        h = final_state(self.rnn(x), self.rnn.bidirectional)
        return self.out(self.drop(h))

"""The built-in LSTM for sequence classification and forecasting.

A stack of single-layer ``nn.LSTM`` modules (one per layer, so that norms and residual
connections can sit between them), a pooling of the output sequence to one vector, and a
linear head: class logits, or ``horizon`` forecast values.

- ``norm_placement: input`` normalises the raw input features, ``between`` the output of every
  LSTM layer, ``output`` the pooled vector in front of the head.
- ``residual: true`` adds each layer's input to its output from the second layer on (the first
  layer changes the width from the input features to the hidden size).
- ``dropout`` is applied to the output of every layer and to the pooled vector.
- Unequal-length series arrive zero-padded with their ``lengths``; every layer runs on packed
  sequences, so the padding never enters a hidden state, and pooling ignores it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tuner.objectives.models._norm import SequenceNorm, VectorNorm


class LSTMModel(nn.Module):
    """Stacked (bi)LSTM -> pooling (last | mean | attention) -> linear head."""

    def __init__(
        self,
        input_size: int,
        n_outputs: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        pooling: str = "last",
        residual: bool = False,
        norm: str = "none",
        norm_placement: str = "between",
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.residual = residual
        D = hidden_size * (2 if bidirectional else 1)  # width of every layer's output
        placement = norm_placement if norm != "none" else None
        self.input_norm = SequenceNorm(norm, input_size) if placement == "input" else None
        self.layers = nn.ModuleList(
            nn.LSTM(
                input_size if i == 0 else D,
                hidden_size,
                batch_first=True,
                bidirectional=bidirectional,
            )
            for i in range(num_layers)
        )
        self.between_norms = nn.ModuleList(
            SequenceNorm(norm, D) for _ in range(num_layers) if placement == "between"
        )
        self.attention = (
            nn.Sequential(nn.Linear(D, D), nn.Tanh(), nn.Linear(D, 1, bias=False))
            if pooling == "attention"
            else None
        )
        self.output_norm = VectorNorm(norm, D) if placement == "output" else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(D, n_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, T, C) ; lengths: (B,) valid steps per series, or None when all T are valid
        B, T, _ = x.shape
        mask = None
        if lengths is not None:
            mask = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T)
        if self.input_norm is not None:
            x = self.input_norm(x, mask)  # (B, T, C)
        for i, lstm in enumerate(self.layers):
            if lengths is None:
                out, _ = lstm(x)  # (B, T, D)
            else:
                packed = pack_padded_sequence(
                    x, lengths.cpu(), batch_first=True, enforce_sorted=False
                )
                out, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=T)
            if self.residual and i > 0:
                out = out + x  # (B, T, D)
            if len(self.between_norms):
                out = self.between_norms[i](out, mask)  # (B, T, D)
            x = self.dropout(out)  # (B, T, D)

        if self.pooling == "last":
            # forward direction: last valid step; backward direction: its final state is at t=0
            last = (lengths - 1) if lengths is not None else torch.full((B,), T - 1)
            last = last.to(x.device)
            pooled = x[torch.arange(B, device=x.device), last, : self.hidden_size]  # (B, H)
            if self.bidirectional:
                pooled = torch.cat([pooled, x[:, 0, self.hidden_size :]], dim=-1)  # (B, 2H)
        elif self.pooling == "mean":
            if mask is None:
                pooled = x.mean(dim=1)  # (B, D)
            else:
                m = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
                pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)  # (B, D)
        else:
            scores = self.attention(x).squeeze(-1)  # (B, T)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores.float(), dim=1).to(x.dtype)  # (B, T)
            pooled = torch.einsum("bt,btd->bd", weights, x)  # (B, D)

        if self.output_norm is not None:
            pooled = self.output_norm(pooled)  # (B, D)
        return self.head(self.dropout(pooled))  # (B, n_outputs)

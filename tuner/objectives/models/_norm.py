"""Normalisation layers shared by the models, each aware of padded steps where that matters."""

from __future__ import annotations

import torch
from torch import nn


class SequenceNorm(nn.Module):
    """LayerNorm or BatchNorm over the feature axis of ``(B, T, C)`` sequences.

    BatchNorm's statistics are taken over batch x time, on valid steps only: padding of
    unequal-length series would otherwise drag the mean toward zero. Padded steps come out 0.
    """

    def __init__(self, kind: str, features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features) if kind == "layernorm" else nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, T, C); mask: (B, T) True on valid steps, or None when all are valid
        B, T, C = x.shape
        if mask is None:
            return self.norm(x.reshape(B * T, C)).reshape(B, T, C)
        out = x.new_zeros(B, T, C)
        out[mask] = self.norm(x[mask]).to(out.dtype)  # (valid steps, C)
        return out


class VectorNorm(nn.Module):
    """LayerNorm or BatchNorm of ``(B, D)`` feature vectors (the pooled sequence)."""

    def __init__(self, kind: str, features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features) if kind == "layernorm" else nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)  # (B, D)


class ChannelNorm(nn.Module):
    """Norm over the channels of conv feature maps ``(B, C, *spatial)``.

    ``batchnorm`` is BatchNorm1d/2d (statistics over batch and positions); ``layernorm``
    normalises the C channels at each position, as in ConvNeXt, so it does not mix positions
    and needs no fixed input size.
    """

    def __init__(self, kind: str, channels: int, dims: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "batchnorm":
            self.norm: nn.Module = (
                nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
            )
        else:
            self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, L) or (B, C, H, W)
        if self.kind == "batchnorm":
            return self.norm(x)
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)  # LN over C at each position

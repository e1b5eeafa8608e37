"""The built-in CNN: 1-D over sequences ``(B, T, C)`` or 2-D over images ``(B, 1, H, W)``.

``num_layers`` conv blocks of ``channels`` filters each. A block is
conv (``kernel_size``, "same" padding: an even kernel pads one more zero at the end) -> norm
and activation in the order ``norm_placement`` says -> optional residual shortcut (1x1 conv
where the width changes) -> downsampling by 2 (``pooling: max | avg``; skipped once a side is
shorter than 2; ``none`` keeps the full resolution, as Wang et al.'s FCN and ResNet for time
series do) -> dropout.
After the blocks, a global average over the remaining positions (padded steps of
unequal-length series excluded) feeds a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from tuner.objectives.models._norm import ChannelNorm


class ConvBlock(nn.Module):
    """conv -> norm/activation -> (+ shortcut) -> pool -> dropout."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        norm: str,
        norm_placement: str,
        pooling: str | None,
        residual: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        Conv = nn.Conv1d if dims == 1 else nn.Conv2d
        # "same" padding spelled out, as PyTorch's padding="same" pads but without its warning
        # for even kernels: (k - 1) // 2 zeros on both sides in the conv, and for an even
        # kernel one more at the end of each spatial axis (right; bottom for images)
        self.pad: nn.Module = nn.Identity()
        if kernel_size % 2 == 0:
            Pad = nn.ConstantPad1d if dims == 1 else nn.ConstantPad2d
            self.pad = Pad((0, 1) * dims, 0.0)
        self.conv = Conv(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.norm = ChannelNorm(norm, out_channels, dims) if norm != "none" else nn.Identity()
        self.norm_first = norm_placement == "before_activation"
        self.act = nn.ReLU()
        self.shortcut: nn.Module | None = None
        if residual:
            same = in_channels == out_channels
            self.shortcut = nn.Identity() if same else Conv(in_channels, out_channels, 1)
        pools = {"max": (nn.MaxPool1d, nn.MaxPool2d), "avg": (nn.AvgPool1d, nn.AvgPool2d)}
        self.pool = pools[pooling][dims - 1](2) if pooling else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, L) or (B, C_in, H, W)
        h = self.conv(self.pad(x))  # (B, C_out, L) / (B, C_out, H, W)
        h = self.act(self.norm(h)) if self.norm_first else self.norm(self.act(h))
        if self.shortcut is not None:
            h = h + self.shortcut(x)
        return self.dropout(self.pool(h))  # (B, C_out, L/2) / (B, C_out, H/2, W/2)


class CNNModel(nn.Module):
    """Conv blocks -> global average pooling -> linear head."""

    def __init__(
        self,
        in_channels: int,
        length: int,
        n_outputs: int,
        dims: int = 1,
        channels: int = 64,
        kernel_size: int = 3,
        num_layers: int = 3,
        dropout: float = 0.0,
        pooling: str = "max",
        norm: str = "batchnorm",
        norm_placement: str = "before_activation",
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.dims = dims
        blocks = []
        size = length  # T for sequences, H (= W) for images
        for i in range(num_layers):
            pool_here = pooling if pooling != "none" and size >= 2 else None
            blocks.append(
                ConvBlock(
                    dims,
                    in_channels if i == 0 else channels,
                    channels,
                    kernel_size,
                    norm,
                    norm_placement,
                    pool_here,
                    residual,
                    dropout,
                )
            )
            size = size // 2 if pool_here else size
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, T, C) sequences or (B, 1, H, W) images ; lengths: (B,) or None
        if self.dims == 1:
            T = x.shape[1]
            x = x.transpose(1, 2)  # (B, C, T)
        h = self.blocks(x)  # (B, channels, T') or (B, channels, H', W')
        if self.dims == 2 or lengths is None:
            pooled = h.flatten(2).mean(dim=2)  # (B, channels)
        else:
            # a series of n valid steps covers ceil(n * T' / T) of the T' output positions
            t_out = h.shape[2]
            valid = torch.ceil(lengths.to(h.device) * t_out / T).clamp(1, t_out)  # (B,)
            mask = torch.arange(t_out, device=h.device)[None, :] < valid[:, None]  # (B, T')
            m = mask.unsqueeze(1).to(h.dtype)  # (B, 1, T')
            pooled = (h * m).sum(dim=2) / m.sum(dim=2)  # (B, channels)
        return self.head(pooled)  # (B, n_outputs)

"""NCSN++ building blocks: residual blocks (BigGAN / DDPM), self-attention, resampling, combine."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from networks.layers.fir import (
    Resample,
    fir_conv_downsample_2d,
    fir_kernel_2d,
    fir_upsample_conv_2d,
)
from networks.layers.init import conv1x1, conv3x3, dense, group_norm, variance_scaling_

_SQRT2 = math.sqrt(2.0)


def _merge(x: torch.Tensor, h: torch.Tensor, skip_rescale: bool) -> torch.Tensor:
    # 1/sqrt(2) keeps the variance of a sum of two unit-variance branches at 1
    return (x + h) / _SQRT2 if skip_rescale else x + h


class ResnetBlockBigGAN(nn.Module):
    """GN-SiLU-(resample)-conv-(+temb)-GN-SiLU-dropout-conv, with a 1x1 shortcut if needed."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.0,
        fir: bool = True,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.norm0 = group_norm(in_ch)
        self.resample = Resample("up" if up else "down", fir, fir_kernel) if up or down else None
        self.conv0 = conv3x3(in_ch, out_ch)
        self.dense = dense(temb_dim, out_ch) if temb_dim is not None else None
        self.norm1 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        self.shortcut = conv1x1(in_ch, out_ch) if in_ch != out_ch or up or down else None
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.conv0(h)
        if self.dense is not None:
            h = h + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return _merge(x, h, self.skip_rescale)


class ResnetBlockDDPM(nn.Module):
    """DDPM++ residual block (no internal resampling); 1x1 shortcut when widths differ."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        dropout: float = 0.0,
        skip_rescale: bool = True,
        init_scale: float = 0.0,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.norm0 = group_norm(in_ch)
        self.conv0 = conv3x3(in_ch, out_ch)
        self.dense = dense(temb_dim, out_ch) if temb_dim is not None else None
        self.norm1 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        self.shortcut = conv1x1(in_ch, out_ch, init_scale=0.1) if in_ch != out_ch else None
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        if self.dense is not None:
            h = h + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return _merge(x, h, self.skip_rescale)


class AttnBlock(nn.Module):
    """Single-head self-attention over all (F, T) positions, with a residual connection."""

    def __init__(self, channels: int, skip_rescale: bool = True, init_scale: float = 0.0):
        super().__init__()
        self.norm = group_norm(channels)
        # q, k, v as one 1x1 conv; each third initialised as its own (C, C) projection
        self.qkv = conv1x1(channels, 3 * channels)
        for w in self.qkv.weight.data.chunk(3, dim=0):
            variance_scaling_(w, 0.1)
        self.proj = conv1x1(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2).unbind(1)
        # default scale 1/sqrt(C) is the reference scaling
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        h = self.proj(h.transpose(-1, -2).reshape(B, C, H, W))
        return _merge(x, h, self.skip_rescale)


class ConvResample(nn.Module):
    """2x resampling with a learned 3x3 conv (for DDPM-type blocks and residual pyramids).

    FIR: transposed conv + FIR filter (up) or FIR filter + strided conv (down).
    No FIR: nearest upsampling + conv, or padded strided conv.
    """

    def __init__(
        self,
        mode: str,
        in_ch: int,
        out_ch: int | None = None,
        fir: bool = True,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        if mode not in ("up", "down"):
            raise ValueError(f"ConvResample mode must be 'up' or 'down', got {mode!r}")
        out_ch = out_ch or in_ch
        self.mode, self.fir = mode, fir
        self.conv = conv3x3(in_ch, out_ch)
        self.register_buffer("k2d", fir_kernel_2d(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.conv.weight, self.conv.bias[None, :, None, None]
        if self.fir:
            if self.mode == "up":
                return fir_upsample_conv_2d(x, w, self.k2d) + b
            return fir_conv_downsample_2d(x, w, self.k2d) + b
        if self.mode == "up":
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return F.conv2d(F.pad(x, (0, 1, 0, 1)), w, self.conv.bias, stride=2)


class Combine(nn.Module):
    """Merge the input pyramid into the feature map: 1x1 conv, then sum or concatenation."""

    def __init__(self, in_ch: int, out_ch: int, method: str = "sum"):
        super().__init__()
        if method not in ("sum", "cat"):
            raise ValueError(f"progressive_combine must be 'sum' or 'cat', got {method!r}")
        self.conv = conv1x1(in_ch, out_ch)
        self.method = method

    def forward(self, pyramid: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        p = self.conv(pyramid)
        return p + h if self.method == "sum" else torch.cat([p, h], dim=1)

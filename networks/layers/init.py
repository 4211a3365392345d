"""DDPM-style initialisation: variance scaling (fan_avg, uniform) for convs and linears."""

import math

import torch
from torch import nn


@torch.no_grad()
def variance_scaling_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Uniform init with variance scale / fan_avg; scale 0 means 1e-10 (as in score_sde).

    fan_in / fan_out count the receptive field (kernel size) as in TF's initialiser.
    """
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.ndim > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    variance = scale / ((fan_in + fan_out) / 2)
    bound = math.sqrt(3 * variance)
    return weight.uniform_(-bound, bound)


def conv2d(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, init_scale: float = 1.0
) -> nn.Conv2d:
    """Conv with 'same' padding (odd kernel), variance-scaling weights, zero bias."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def conv3x3(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    return conv2d(in_ch, out_ch, 3, init_scale=init_scale)


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    return conv2d(in_ch, out_ch, 1, init_scale=init_scale)


def dense(in_features: int, out_features: int, init_scale: float = 1.0) -> nn.Linear:
    lin = nn.Linear(in_features, out_features)
    variance_scaling_(lin.weight, init_scale)
    nn.init.zeros_(lin.bias)
    return lin


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(C // 4, 32) groups and eps 1e-6, as in NCSN++."""
    groups = min(channels // 4, 32)
    if groups < 1 or channels % groups:
        raise ValueError(
            f"GroupNorm needs a channel count >= 4 divisible into min(C // 4, 32) groups, "
            f"got {channels}: choose nf and ch_mult so every level has such a width"
        )
    return nn.GroupNorm(groups, channels, eps=1e-6)

"""Time embeddings: Gaussian Fourier features and sinusoidal (positional) features."""

import math

import torch
from torch import nn


class GaussianFourierProjection(nn.Module):
    """[sin(2 pi W v), cos(2 pi W v)] with fixed random W ~ N(0, scale^2); output 2 * size."""

    def __init__(self, embedding_size: int = 256, scale: float = 16.0):
        super().__init__()
        # a fixed random projection: part of the model state, never trained
        self.register_buffer("W", torch.randn(embedding_size) * scale)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        proj = v[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def sinusoidal_embedding(v: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer/DDPM sinusoidal features of a continuous value v (B,) -> (B, dim)."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dimension must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=v.device) / half
    )
    args = v.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1).to(v.dtype)


def require_positive_t(t, message: str) -> None:
    """Fail if any diffusion time is <= 0, without a host-device synchronisation on GPUs.

    On the CPU a ValueError with `message`; on an accelerator an asynchronous device
    assertion (the step fails at the next synchronisation), so the training step does
    not wait for the GPU to check its inputs.
    """
    if t.device.type == "cpu":
        if bool((t <= 0).any()):
            raise ValueError(message)
    else:
        torch._assert_async((t > 0).all(), message)

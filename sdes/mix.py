"""The diffusion-mixing SDE of DiffSep and its mixture-energy-modulated variant.

    dx = -gamma Pbar x dt + g(t) dw,   g(t) = sigma_min rho^t sqrt(2 log rho)

Closed-form marginal (method.md): mean ``(P + exp(-gamma t) Pbar) x0``, covariance
``lam1 P + lam2 Pbar``. PriorMixSDE multiplies the diffusion, hence the covariance
square root, by the local mixture level ``sigma_mix[n]``, sample by sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sdes.base import (
    SDE,
    StdOp,
    check_nonnegative,
    check_sigmas,
    decayed_variance,
    geometric_diffusion,
    renamed_argument,
    source_mean,
)


class MixSDE(SDE):
    """Diffusion-mixing SDE: sources drift towards their average ``mix / K``.

    Args:
        n_sources: number of sources K (>= 2); ``ndim`` is a deprecated alias.
        d_lambda: mixing rate ``gamma`` of the drift.
        sigma_min, sigma_max: noise level range, ``sigma_max > sigma_min > 0``.
        N: default number of reverse steps.
    """

    @renamed_argument("ndim", "n_sources")
    def __init__(
        self, n_sources: int, d_lambda: float, sigma_min: float, sigma_max: float, N: int
    ):
        super().__init__(n_sources, N)
        check_nonnegative("d_lambda", d_lambda)
        check_sigmas(sigma_min, sigma_max)
        self.d_lambda = float(d_lambda)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def diffusion_scale(self, mix: Tensor) -> float | Tensor:
        """Per-sample factor on the diffusion and the std; 1 for the plain SDE."""
        return 1.0

    def sde(self, x: Tensor, t, mix: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, mix)
        t = self._time(t, x)
        drift = -self.d_lambda * (x - source_mean(x))
        g = geometric_diffusion(t, self.sigma_min, self.sigma_max)
        return drift, g * self.diffusion_scale(mix)

    def mean_coefs(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ones = torch.ones_like(t)
        return ones, torch.exp(-self.d_lambda * t), torch.zeros_like(t)

    def eigen_variances(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(lam1, lam2)``: the covariance eigenvalues on ``P`` and ``Pbar`` (unscaled)."""
        lam1 = decayed_variance(t, 0.0, self.sigma_min, self.sigma_max)
        lam2 = decayed_variance(t, self.d_lambda, self.sigma_min, self.sigma_max)
        return lam1, lam2

    def marginal_std(self, t, mix: Tensor) -> StdOp:
        lam1, lam2 = self.eigen_variances(self._time(t, mix))
        scale = self.diffusion_scale(mix)
        return StdOp(torch.sqrt(lam1) * scale, torch.sqrt(lam2) * scale)

    def noise_std(self, t: Tensor) -> Tensor:
        """``sqrt(lam1(t))``: the larger of the two standard deviations (``lam1 >= lam2``)."""
        t = torch.as_tensor(t)
        return torch.sqrt(decayed_variance(t, 0.0, self.sigma_min, self.sigma_max))


class PriorMixSDE(MixSDE):
    """MixSDE whose diffusion follows the local mixture level (speech enhancement).

    ``sigma_mix[n] = 0.5 sqrt(max(mean(y[m]^2 for m in window(n)), 1e-4))`` where the
    window holds ``avg_len`` samples centred on ``n`` (``avg_len // 2`` before ``n``,
    the rest after, so ``n`` is the centre for odd lengths) and is cut at the signal
    edges: the average runs over the samples that exist, so the edges are not
    attenuated by zero padding.
    """

    floor = 1e-4

    @renamed_argument("ndim", "n_sources")
    def __init__(
        self,
        n_sources: int,
        d_lambda: float,
        sigma_min: float,
        sigma_max: float,
        N: int,
        avg_len: int = 510,
    ):
        super().__init__(n_sources, d_lambda, sigma_min, sigma_max, N)
        if int(avg_len) != avg_len or avg_len < 1:
            raise ValueError(f"avg_len must be an integer >= 1, got {avg_len}")
        self.avg_len = int(avg_len)

    def sigma_mix(self, mix: Tensor) -> Tensor:
        """Local mixture level, ``(B, 1, L)``."""
        if mix.dim() != 3 or mix.shape[1] != 1:
            raise ValueError(f"mix must have shape (B, 1, L), got {tuple(mix.shape)}")
        length, before = mix.shape[-1], self.avg_len // 2
        after = self.avg_len - 1 - before
        # Window sums as differences of a running sum: O(L) instead of O(L avg_len).
        # Accumulated in float64 (float32 where unsupported) to keep the differences exact.
        acc = torch.float32 if mix.device.type == "mps" else torch.float64
        running = F.pad(mix.to(acc) ** 2, (before + 1, after)).cumsum(-1)
        window_sum = running[..., self.avg_len :] - running[..., :length]
        n = torch.arange(length, device=mix.device)
        count = (n + after).clamp(max=length - 1) - (n - before).clamp(min=0) + 1
        energy = window_sum / count.to(acc)
        return (0.5 * torch.sqrt(torch.clamp(energy, min=self.floor))).to(mix.dtype)

    def diffusion_scale(self, mix: Tensor) -> Tensor:
        return self.sigma_mix(mix)

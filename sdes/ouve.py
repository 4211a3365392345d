"""The SGMSE+ Ornstein-Uhlenbeck variance-exploding SDE, for comparison with MixSDE.

    dx = theta (ybar - x) dt + g(t) dw,   ybar = mix / K on every source

Closed-form marginal: mean ``ybar + exp(-theta t) (x0 - ybar)``, isotropic variance
``sigma_min^2 (rho^(2t) - exp(-2 theta t)) / (1 + theta / log rho)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sdes.base import (
    SDE,
    StdOp,
    check_nonnegative,
    check_sigmas,
    decayed_variance,
    geometric_diffusion,
    renamed_argument,
)


class OUVESDE(SDE):
    """OU variance-exploding SDE pulling every source towards ``mix / K``.

    Unlike MixSDE it also accepts ``n_sources = 1``: that is the original SGMSE+ setting
    (clean speech drifting towards the noisy mixture).
    """

    min_sources = 1

    @renamed_argument("ndim", "n_sources")
    def __init__(
        self, n_sources: int, theta: float, sigma_min: float, sigma_max: float, N: int
    ):
        super().__init__(n_sources, N)
        check_nonnegative("theta", theta)
        check_sigmas(sigma_min, sigma_max)
        self.theta = float(theta)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def sde(self, x: Tensor, t, mix: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, mix)
        t = self._time(t, x)
        drift = self.theta * (self.prior_mean(mix) - x)
        return drift, geometric_diffusion(t, self.sigma_min, self.sigma_max)

    def mean_coefs(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        decay = torch.exp(-self.theta * t)
        return decay, decay, 1.0 - decay

    def marginal_std(self, t, mix: Tensor) -> StdOp:
        std = torch.sqrt(self._variance(self._time(t, mix)))
        return StdOp(std, std)

    def noise_std(self, t: Tensor) -> Tensor:
        return torch.sqrt(self._variance(torch.as_tensor(t)))

    def _variance(self, t: Tensor) -> Tensor:
        return decayed_variance(t, self.theta, self.sigma_min, self.sigma_max)

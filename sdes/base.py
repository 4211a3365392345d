"""Abstract SDE shared by every SDE of the project, plus the linear algebra they share.

All SDEs here act on the source axis only through the two projectors of method.md,
``P`` (average over the K sources) and ``Pbar = I - P``, sample by sample. Every
matrix they need (the marginal mean map, the covariance square root, its inverse) is
therefore diagonal in that basis and is stored as a :class:`StdOp`: two broadcastable
tensors holding its eigenvalue on ``P`` and on ``Pbar``. Applying it costs two
elementwise products; inverting it is elementwise, for any K.
"""

from __future__ import annotations

import abc
import copy
import functools
import inspect
import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor


class StdOp(NamedTuple):
    """Symmetric operator ``avg * P + diff * Pbar`` on the source axis.

    ``avg`` and ``diff`` broadcast against ``(B, K, L)``: ``(B, 1, 1)``, or
    ``(B, 1, L)`` when the operator varies along time samples (PriorMixSDE).
    """

    avg: Tensor
    diff: Tensor


def source_mean(x: Tensor) -> Tensor:
    """``P x`` without the broadcast: the average over sources, ``(B, 1, L)``."""
    return x.mean(dim=1, keepdim=True)


def apply_op(op: StdOp, x: Tensor) -> Tensor:
    """``(avg P + diff Pbar) x``."""
    px = source_mean(x)
    return op.avg * px + op.diff * (x - px)


def apply_op_inv(op: StdOp, x: Tensor) -> Tensor:
    """``(P / avg + Pbar / diff) x``, the closed-form inverse of :func:`apply_op`."""
    px = source_mean(x)
    return px / op.avg + (x - px) / op.diff


def geometric_diffusion(t: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """``g(t) = sigma_min rho^t sqrt(2 log rho)`` with ``rho = sigma_max / sigma_min``."""
    log_rho = math.log(sigma_max / sigma_min)
    return sigma_min * torch.exp(t * log_rho) * math.sqrt(2.0 * log_rho)


def decayed_variance(t: Tensor, rate: float, sigma_min: float, sigma_max: float) -> Tensor:
    """Variance at ``t`` of ``dv = -rate v dt + g(t) dw``, ``v(0) = 0``, for the geometric g.

    ``sigma_min^2 (rho^(2t) - exp(-2 rate t)) / (1 + rate / log rho)``, written with
    ``expm1`` so that it stays accurate for small ``t``. ``rate = 0`` gives ``lam1`` of
    method.md, ``rate = gamma`` gives ``lam2``, ``rate = theta`` the OUVE variance.
    """
    log_rho = math.log(sigma_max / sigma_min)
    growth = torch.expm1(2.0 * t * (log_rho + rate))
    return sigma_min**2 * torch.exp(-2.0 * rate * t) * growth / (1.0 + rate / log_rho)


def check_sigmas(sigma_min: float, sigma_max: float) -> None:
    if not (0.0 < sigma_min < sigma_max):
        raise ValueError(
            f"need sigma_max > sigma_min > 0, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )


def check_nonnegative(name: str, value: float) -> None:
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def renamed_argument(old: str, new: str):
    """Let the decorated callable (a constructor) take keyword ``old`` as a deprecated alias
    of its argument ``new``: configs written before the rename (e.g. those stored in old
    checkpoints, rebuilt with Hydra's ``instantiate``) keep working. Giving both is a
    TypeError, and so is giving neither when ``new`` has no default."""

    def decorate(fn):
        sig = inspect.signature(fn)
        required = sig.parameters[new].default is inspect.Parameter.empty
        name = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            rest = {k: v for k, v in kwargs.items() if k != old}
            try:
                given = new in sig.bind_partial(*args, **rest).arguments
            except TypeError:  # a bad call anyway: the callable's own error says why
                if old in kwargs and new not in kwargs:
                    kwargs[new] = kwargs.pop(old)
                return fn(*args, **kwargs)
            if old in kwargs:
                if given:
                    raise TypeError(f"{name}() got both {new}= and its deprecated alias "
                                    f"{old}=; give {new} only")
                warnings.warn(f"{name}(): {old}= is deprecated, use {new}=",
                              DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            elif required and not given:
                raise TypeError(f"{name}() missing the required argument {new} (formerly {old})")
            return fn(*args, **kwargs)

        return wrapper

    return decorate


class SDE(abc.ABC):
    """Forward SDE ``dx = f(x, t, mix) dt + g(t, mix) dw`` on ``t in [0, T]``, ``T = 1``.

    Subclasses give the drift and diffusion (:meth:`sde`), the marginal mean map
    (:meth:`mean_coefs`), the marginal standard deviation (:meth:`marginal_std`) and a
    scalar noise level (:meth:`noise_std`). Everything else (sampling the prior,
    perturbing data, Tweedie's formula, the reverse-time discretisation) is derived
    here, so samplers never need to know which SDE they drive.
    """

    T = 1.0
    min_sources = 2

    @renamed_argument("ndim", "n_sources")
    def __init__(self, n_sources: int, N: int):
        if int(n_sources) != n_sources or n_sources < self.min_sources:
            raise ValueError(
                f"{type(self).__name__} needs n_sources (the number of sources K) to be an "
                f"integer >= {self.min_sources}, got {n_sources}"
            )
        if int(N) != N or N < 1:
            raise ValueError(f"N (number of sampling steps) must be an integer >= 1, got {N}")
        self.n_sources = int(n_sources)
        self.N = int(N)

    @property
    def ndim(self) -> int:
        """Deprecated alias of :attr:`n_sources`."""
        warnings.warn("SDE.ndim is deprecated, use SDE.n_sources", DeprecationWarning,
                      stacklevel=2)
        return self.n_sources

    # ---- what a concrete SDE defines -------------------------------------------------
    @abc.abstractmethod
    def sde(self, x: Tensor, t: Tensor, mix: Tensor) -> tuple[Tensor, Tensor]:
        """``(drift (B, K, L), diffusion)``; diffusion broadcasts against ``x``."""

    @abc.abstractmethod
    def mean_coefs(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(a_avg, a_diff, b)`` for ``t`` of shape ``(B, 1, 1)``, such that the marginal
        mean is ``a_avg P x0 + a_diff Pbar x0 + b * prior_mean(mix)``."""

    @abc.abstractmethod
    def marginal_std(self, t, mix: Tensor) -> StdOp:
        """Symmetric square root of the marginal covariance at ``t`` (``(B,)`` or scalar)."""

    @abc.abstractmethod
    def noise_std(self, t: Tensor) -> Tensor:
        """A scalar noise level per example, ``(B,)`` for ``t`` of shape ``(B,)``."""

    # ---- shape handling --------------------------------------------------------------
    def _check(self, x: Tensor, mix: Tensor, name: str = "x") -> None:
        if x.dim() != 3 or x.shape[1] != self.n_sources:
            raise ValueError(
                f"{name} must have shape (B, K={self.n_sources}, L), got {tuple(x.shape)}"
            )
        if mix.dim() != 3 or mix.shape[1] != 1:
            raise ValueError(f"mix must have shape (B, 1, L), got {tuple(mix.shape)}")
        if mix.shape[0] != x.shape[0] or mix.shape[2] != x.shape[2]:
            raise ValueError(
                f"mix {tuple(mix.shape)} does not match {name} {tuple(x.shape)} "
                "in batch size or length"
            )

    def _time(self, t, like: Tensor) -> Tensor:
        """``t`` as a ``(B, 1, 1)`` tensor on ``like``'s device and dtype.

        A Python number or 0-d tensor is broadcast to the batch; otherwise ``t`` must
        have shape ``(B,)``.
        """
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
        batch = like.shape[0]
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape (B={batch},) or be a scalar, got {tuple(t.shape)}")
        return t[:, None, None]

    # ---- derived quantities ----------------------------------------------------------
    def prior_mean(self, mix: Tensor) -> Tensor:
        """``mix / K`` on every source, ``(B, K, L)``."""
        if mix.dim() != 3 or mix.shape[1] != 1:
            raise ValueError(f"mix must have shape (B, 1, L), got {tuple(mix.shape)}")
        return (mix / self.n_sources).expand(-1, self.n_sources, -1)

    def marginal_mean(self, x0: Tensor, t, mix: Tensor) -> Tensor:
        self._check(x0, mix, "x0")
        a_avg, a_diff, b = self.mean_coefs(self._time(t, x0))
        return apply_op(StdOp(a_avg, a_diff), x0) + b * self.prior_mean(mix)

    def marginal_prob(self, x0: Tensor, t, mix: Tensor) -> tuple[Tensor, StdOp]:
        """``(mean, L)`` of the Gaussian ``p(x_t | x0, mix)``; read ``L`` with
        :meth:`mult_std` / :meth:`mult_std_inv`."""
        return self.marginal_mean(x0, t, mix), self.marginal_std(t, mix)

    @staticmethod
    def mult_std(L: StdOp, x: Tensor) -> Tensor:
        """``L x`` with ``L`` the covariance square root from :meth:`marginal_prob`."""
        return apply_op(L, x)

    @staticmethod
    def mult_std_inv(L: StdOp, x: Tensor) -> Tensor:
        """``L^{-1} x`` in closed form."""
        return apply_op_inv(L, x)

    def prior_sampling(self, shape, mix: Tensor, generator: torch.Generator | None = None):
        """``x_T = mix / K + L(T) z``: the mixture prior the reverse process starts from."""
        shape = tuple(shape)
        if len(shape) != 3 or shape[1] != self.n_sources:
            raise ValueError(f"shape must be (B, K={self.n_sources}, L), got {shape}")
        mean = self.prior_mean(mix)
        if tuple(mean.shape) != shape:
            raise ValueError(f"shape {shape} does not match mix {tuple(mix.shape)}")
        z = randn_like(mean, generator)
        std = self.marginal_std(self.T, mix)
        return mean + self.mult_std(std, z)

    def perturb(self, x0: Tensor, t, mix: Tensor, z: Tensor | None = None, generator=None):
        """Sample ``x_t = mean + L z``; returns ``(x_t, z, L)``."""
        mean, std = self.marginal_prob(x0, t, mix)
        if z is None:
            z = randn_like(x0, generator)
        elif z.shape != x0.shape:
            raise ValueError(f"z must have the shape of x0 {tuple(x0.shape)}, got {tuple(z.shape)}")
        return mean + self.mult_std(std, z), z, std

    def tweedie(self, x: Tensor, t, mix: Tensor, score: Tensor) -> Tensor:
        """``E[x0 | x_t] = A(t)^{-1} (x + Cov(t) score - b mix / K)``.

        Tweedie's formula gives ``E[mean_t(x0) | x_t] = x + Cov(t) score`` because the
        covariance does not depend on ``x0``; the mean map is affine in ``x0`` and
        diagonal in the ``(P, Pbar)`` basis, so it is inverted elementwise.
        """
        self._check(x, mix)
        std = self.marginal_std(t, mix)
        mean_est = x + self.mult_std(std, self.mult_std(std, score))
        a_avg, a_diff, b = self.mean_coefs(self._time(t, x))
        return apply_op_inv(StdOp(a_avg, a_diff), mean_est - b * self.prior_mean(mix))

    def data_score(self, x: Tensor, t, mix: Tensor, x0: Tensor) -> Tensor:
        """The score of ``x_t`` whose posterior mean is ``x0``: ``-Cov(t)^{-1} (x - mean_t(x0))``.

        The inverse of :meth:`tweedie`: ``tweedie(x, t, mix, data_score(x, t, mix, x0))``
        returns ``x0``. A network that predicts ``E[x0 | x_t]`` (a separator) becomes a
        score model this way, and the score-matching loss becomes
        ``|L^{-1} A(t) (x0_hat - x0)|^2``, a weighted regression on the sources.
        """
        self._check(x, mix)
        self._check(x0, mix, "x0")
        std = self.marginal_std(t, mix)
        cov = StdOp(std.avg**2, std.diff**2)
        return -apply_op_inv(cov, x - self.marginal_mean(x0, t, mix))

    def gaussian_source_score(self, x: Tensor, t, mix: Tensor, var: float) -> Tensor:
        """Exact score of ``x_t`` when the sources are Gaussian around their average.

        Source model: ``x0 = mix / K + u`` with ``P u = 0`` (the sources sum to the
        mixture) and ``u ~ N(0, var Pbar)``. Then ``x_t - m = a_diff u + L z`` with
        ``m = mean_t(mix / K)``, whose covariance is ``avg^2 P + (a_diff^2 var + diff^2)
        Pbar``, so the score is ``-(P / avg^2 + Pbar / (a_diff^2 var + diff^2)) (x - m)``.
        It knows nothing of which source is which; a network can learn the rest.
        """
        self._check(x, mix)
        if not var >= 0.0:
            raise ValueError(f"var must be >= 0, got {var}")
        std = self.marginal_std(t, mix)
        _, a_diff, _ = self.mean_coefs(self._time(t, x))
        m = self.marginal_mean(self.prior_mean(mix), t, mix)
        cov = StdOp(std.avg**2, a_diff**2 * var + std.diff**2)
        return -apply_op_inv(cov, x - m)

    def gaussian_source_posterior(self, x: Tensor, t, mix: Tensor, var: float):
        """``(mean, std)`` of ``x0 | x_t`` for the Gaussian source model above.

        ``P x0 = mix / K`` is known; on ``Pbar``, ``Pbar (x_t - m) = a_diff u + diff Pbar z``
        gives the posterior mean ``mix / K + a_diff var / (a_diff^2 var + diff^2) Pbar (x - m)``
        and the covariance ``std^2 Pbar`` with ``std^2 = var diff^2 / (a_diff^2 var + diff^2)``.
        ``std`` broadcasts against ``(B, K, L)``; the mean equals :meth:`tweedie` of
        :meth:`gaussian_source_score`.
        """
        self._check(x, mix)
        if not var >= 0.0:
            raise ValueError(f"var must be >= 0, got {var}")
        std = self.marginal_std(t, mix)
        _, a_diff, _ = self.mean_coefs(self._time(t, x))
        r = x - self.marginal_mean(self.prior_mean(mix), t, mix)
        r = r - source_mean(r)
        denom = a_diff**2 * var + std.diff**2
        mean = self.prior_mean(mix) + (a_diff * var / denom) * r
        return mean, torch.sqrt(var * std.diff**2 / denom)

    def discretize(self, x: Tensor, t, mix: Tensor, dt) -> tuple[Tensor, Tensor]:
        """Forward increment over a step ``dt > 0``: ``(f dt, g sqrt(dt))`` (Euler)."""
        drift, diffusion = self.sde(x, t, mix)
        dt = self._time(dt, x)
        return drift * dt, diffusion * torch.sqrt(dt)

    def copy(self) -> SDE:
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``torch.randn_like`` that accepts a generator (which must live on ``x``'s device)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

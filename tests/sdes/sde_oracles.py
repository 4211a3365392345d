"""Independent references for the SDE tests: dense K x K closed forms and Gaussian posteriors.

Everything here is written from method.md in numpy float64 with explicit matrices, and
uses nothing from ``sdes`` apart from the call convention ``score_fn(x, t, mix)``.

Gaussian sources. With ``x0 ~ N(0, S)``, ``S = diag(s_k^2)`` independently for every
time sample n, ``y = 1^T x0`` and ``x_t = A(t) x0 + sigma_n Cov(t)^(1/2) z``, the pair
``(x_t, y)`` is jointly Gaussian, so conditioning on y gives (per sample n)

    E[x0 | y]    = m y,            m   = S 1 / (1^T S 1)
    Cov(x0 | y)  = S_y           = S - S 1 1^T S / (1^T S 1)
    x_t | y      ~ N(A m y, C_t),  C_t = A S_y A^T + sigma_n^2 Cov(t)
    score        = -C_t^{-1} (x_t - A m y)
    E[x0 | x_t, y] = m y + S_y A^T C_t^{-1} (x_t - A m y)

(the noise z is independent of x0, hence of y). ``sigma_n = 1`` except for PriorMixSDE.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def projectors(K: int) -> tuple[np.ndarray, np.ndarray]:
    P = np.full((K, K), 1.0 / K)
    return P, np.eye(K) - P


def mix_moments(t: float, K: int, gamma: float, smin: float, smax: float):
    """``(A(t), Cov(t))`` of MixSDE: mean = A x0, covariance lam1 P + lam2 Pbar."""
    rho = smax / smin
    P, Pbar = projectors(K)
    lam1 = smin**2 * (rho ** (2 * t) - 1.0)
    lam2 = smin**2 * (rho ** (2 * t) - math.exp(-2 * gamma * t)) / (1 + gamma / math.log(rho))
    return P + math.exp(-gamma * t) * Pbar, lam1 * P + lam2 * Pbar


def ouve_moments(t: float, K: int, theta: float, smin: float, smax: float):
    """``(A(t), Cov(t))`` of OUVESDE for a consistent mixture (``ybar = P x0``).

    mean = ybar + e^{-theta t} (x0 - ybar) = (e^{-theta t} I + (1 - e^{-theta t}) P) x0.
    """
    rho = smax / smin
    P, _ = projectors(K)
    decay = math.exp(-theta * t)
    var = (
        smin**2
        * (rho ** (2 * t) - math.exp(-2 * theta * t))
        * math.log(rho)
        / (theta + math.log(rho))
    )
    return decay * np.eye(K) + (1 - decay) * P, var * np.eye(K)


def sigma_mix_direct(y: np.ndarray, avg_len: int) -> np.ndarray:
    """PriorMix level by a plain loop: ``0.5 sqrt(max(mean of y^2 over the window, 1e-4))``.

    The window of sample n runs from ``n - avg_len // 2`` to ``n - avg_len // 2 +
    avg_len - 1`` and is cut to the samples that exist.
    """
    out = np.empty_like(y, dtype=np.float64)
    for n in range(len(y)):
        lo = max(0, n - avg_len // 2)
        hi = min(len(y), n - avg_len // 2 + avg_len)
        out[n] = 0.5 * math.sqrt(max(float(np.mean(np.asarray(y[lo:hi], np.float64) ** 2)), 1e-4))
    return out


class GaussianPosterior:
    """Exact ``p(x_t | y)`` and its score for independent Gaussian sources (see module doc).

    Args:
        src_std: the K source standard deviations ``s_k``.
        moments: ``t -> (A(t), Cov(t))`` dense K x K numpy arrays.
        sigma_fn: ``mix (B, 1, L) -> sigma_n (B, 1, L)`` (PriorMix), or None for 1.
        envelope: optional ``(L,)`` level ``a_n``: the sources at sample n have standard
            deviations ``a_n s_k`` (so ``S`` and ``S_y`` scale by ``a_n^2``, ``m`` does not).
    """

    def __init__(self, src_std, moments, sigma_fn=None, envelope=None):
        s2 = np.asarray(src_std, dtype=np.float64) ** 2
        self.K = len(s2)
        S = np.diag(s2)
        one = np.ones(self.K)
        self.S = S
        self.m = S @ one / (one @ S @ one)
        self.S_y = S - np.outer(S @ one, S @ one) / (one @ S @ one)
        self.moments = moments
        self.sigma_fn = sigma_fn
        self.envelope = None if envelope is None else torch.as_tensor(envelope, dtype=torch.float64)

    def sample_sources(self, B: int, L: int, generator: torch.Generator) -> torch.Tensor:
        """``x0 (B, K, L)`` float32 drawn from the model."""
        std = torch.from_numpy(np.sqrt(np.diag(self.S)))[None, :, None]
        if self.envelope is not None:
            std = std * self.envelope[None, None, :]
        z = torch.randn(B, self.K, L, generator=generator, dtype=torch.float64)
        return (std * z).float()

    def _sample_weights(self, mix: torch.Tensor):
        """``(a_n^2, sigma_n^2)`` as ``(B, L, 1, 1)`` tensors, or None when both are 1."""
        if self.envelope is None and self.sigma_fn is None:
            return None
        ones = torch.ones(mix.shape[0], mix.shape[2], dtype=torch.float64)
        a2 = ones if self.envelope is None else ones * self.envelope[None, :] ** 2
        s2 = ones if self.sigma_fn is None else self.sigma_fn(mix).to(torch.float64)[:, 0] ** 2
        return a2[..., None, None], s2[..., None, None]

    def cond_mean_cov(self, t: float, mix: torch.Tensor):
        """``E[x_t | y]`` as ``(B, K, L)`` and ``C_t`` (float64): one ``(K, K)`` matrix, or
        ``(B, L, K, K)`` when it varies from sample to sample."""
        A, cov = self.moments(t)
        mean = torch.from_numpy(A @ self.m)[None, :, None] * mix.to(torch.float64)
        signal, noise = torch.from_numpy(A @ self.S_y @ A.T), torch.from_numpy(cov)
        weights = self._sample_weights(mix)
        if weights is None:
            return mean, signal + noise
        a2, s2 = weights
        return mean, a2 * signal + s2 * noise

    def score(self, x: torch.Tensor, t: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """The score function handed to the samplers (``t`` is ``(B,)``, one value)."""
        t_val = float(t[0])
        assert torch.all(t == t[0]), "the oracle expects one time per call"
        mean, C = self.cond_mean_cov(t_val, mix)
        return -apply_matrix(torch.linalg.inv(C), x.to(torch.float64) - mean).to(x.dtype)

    def posterior_x0(self, t: float, mix: torch.Tensor):
        """``E[x0 | x_t, y] = m y + G (x_t - A m y)`` with ``G = Cov(x0, x_t | y) C_t^{-1}``.

        Returns ``(m y, G, G C_t G^T)``: the mean, the gain, and the covariance of
        ``E[x0 | x_t, y]`` when ``x_t ~ p(x_t | y)``.
        """
        A, _ = self.moments(t)
        _, C = self.cond_mean_cov(t, mix)
        cross = torch.from_numpy(self.S_y @ A.T)
        weights = self._sample_weights(mix)
        if weights is not None:
            cross = weights[0] * cross
        G = cross @ torch.linalg.inv(C)
        mean = torch.from_numpy(self.m)[None, :, None] * mix.to(torch.float64)
        return mean, G, G @ C @ G.transpose(-1, -2)


def apply_matrix(M: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``M r`` on the source axis of ``r (B, K, L)``; ``M`` is ``(K, K)`` or ``(B, L, K, K)``."""
    if M.dim() == 2:
        return torch.einsum("ij,bjl->bil", M, r)
    return torch.einsum("blij,bjl->bil", M, r)


def whitened_stats(x: torch.Tensor, mean: torch.Tensor, C: torch.Tensor, y: torch.Tensor):
    """Whiten the residuals ``x - mean`` sample by sample with ``chol(C)^{-1}``.

    Returns, over all (b, n), the empirical mean ``(K,)`` and covariance ``(K, K)`` of
    the whitened residuals ``w`` and their correlation ``E[w y] / rms(y)`` with the
    mixture (``(K,)``; it catches a conditional mean with the wrong slope in y, which
    the plain mean cannot, y being symmetric around 0). If ``x ~ N(mean, C)`` they are
    0, I and 0 up to Monte-Carlo error: about ``1/sqrt(n)`` for the means, correlations
    and off-diagonal entries, ``sqrt(2/n)`` on the diagonal.
    """
    K = x.shape[1]
    chol_inv = torch.linalg.inv(torch.linalg.cholesky(C))
    w = apply_matrix(chol_inv, x.to(torch.float64) - mean)
    w = w.permute(1, 0, 2).reshape(K, -1)
    y = y.to(torch.float64).reshape(-1)
    corr = (w * y).mean(1) / y.square().mean().sqrt()
    return w.mean(1), (w @ w.T) / w.shape[1], corr


def pbar_basis(K: int) -> torch.Tensor:
    """An orthonormal basis ``(K, K - 1)`` of the space orthogonal to the all-ones vector."""
    _, Pbar = projectors(K)
    u, _, _ = np.linalg.svd(Pbar)
    return torch.from_numpy(u[:, : K - 1])

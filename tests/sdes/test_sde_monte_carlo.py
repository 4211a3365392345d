"""Monte-Carlo checks: forward SDE simulations and prior draws against the closed forms.

Tolerances. With n i.i.d. draws, the empirical mean of a coordinate has standard error
``sqrt(C_ii / n)`` and the empirical covariance entry ``(i, j)`` has standard error
``sqrt((C_ii C_jj + C_ij^2) / n)`` (Gaussian data). The checks allow 5 standard errors
(a false alarm rate of about 1e-6 per entry), plus, for the simulations, a 1 % margin
for the Euler-Maruyama bias of a 1000-step grid (first order in dt = 1e-3).
"""

import math

import numpy as np
import pytest
import torch

import sdes
from tests.sdes.sde_oracles import mix_moments, ouve_moments, sigma_mix_direct

GAMMA, SMIN, SMAX = 2.0, 0.05, 0.5
N_SIGMA = 5.0


def empirical(x: torch.Tensor):
    """Per time sample n: mean ``(K, L)`` and covariance ``(L, K, K)`` over the batch."""
    mean = x.mean(0)
    r = (x - mean).permute(2, 0, 1)  # (L, n, K)
    return mean, r.transpose(1, 2) @ r / (x.shape[0] - 1)


def assert_moments(x, mean, cov, slack=0.0):
    """``x (n, K, L)`` has mean ``(K, L)`` and covariances ``(L, K, K)`` up to MC error."""
    n = x.shape[0]
    emp_mean, emp_cov = empirical(x)
    var = torch.diagonal(cov, dim1=1, dim2=2).T  # (K, L)
    tol_mean = N_SIGMA * torch.sqrt(var / n) + slack * var.sqrt()
    assert torch.all((emp_mean - mean).abs() <= tol_mean), (emp_mean - mean).abs() / tol_mean
    d = torch.diagonal(cov, dim1=1, dim2=2)
    se = torch.sqrt((d[:, :, None] * d[:, None, :] + cov**2) / n)
    tol_cov = N_SIGMA * se + slack * torch.sqrt(d[:, :, None] * d[:, None, :])
    assert torch.all((emp_cov - cov).abs() <= tol_cov), (emp_cov - cov).abs() / tol_cov


def simulate(x0, drift_fn, diffusion, times, n_paths=4000, n_steps=1000, seed=0):
    """Euler-Maruyama from the fixed ``x0 (K, L)``; returns the states at ``times``.

    The state is float64; the Gaussian increments are drawn in float32 (4x cheaper,
    and statistically the same at this sample size).
    """
    gen = torch.Generator().manual_seed(seed)
    dt = 1.0 / n_steps
    x = x0.expand(n_paths, *x0.shape).clone()
    out = {}
    for i in range(n_steps):
        t = i * dt
        z = torch.randn(x.shape, generator=gen).to(x.dtype)
        x = x + drift_fn(x) * dt + diffusion(t) * math.sqrt(dt) * z
        if round((i + 1) * dt, 9) in times:
            out[round((i + 1) * dt, 9)] = x
    return out


def mixing_drift(x):
    """``-gamma Pbar x``; the source average as a sum of slices (a reduction over a
    middle axis of size K is ~5x slower, and this runs 1000 times per simulation)."""
    avg = sum(x[:, k : k + 1] for k in range(x.shape[1])) / x.shape[1]
    return -GAMMA * (x - avg)


def g(t, smin=SMIN, smax=SMAX):
    rho = smax / smin
    return smin * rho**t * math.sqrt(2 * math.log(rho))


def closed_form(sde, x0, t, mix, K):
    """Mean ``(K, L)`` and covariances ``(L, K, K)`` from the SDE object itself."""
    x0b, mixb = x0[None].expand(K, -1, -1), mix[None].expand(K, -1, -1)
    mean, std = sde.marginal_prob(x0b, torch.full((K,), t, dtype=x0.dtype), mixb)
    eye = torch.eye(K, dtype=x0.dtype)[:, :, None].expand(K, K, x0.shape[-1])
    cols = sde.mult_std(std, sde.mult_std(std, eye))  # [b, :, n] = Cov_n e_b
    return mean[0], cols.permute(2, 1, 0)


X0 = torch.tensor([[1.0, -0.5, 0.0], [0.2, 0.3, -1.0], [-0.7, 0.1, 0.5]], dtype=torch.float64)


@pytest.mark.parametrize("K", [2, 3])
def test_mix_sde_simulation_matches_closed_form(K):
    x0 = X0[:K]
    mix = x0.sum(0, keepdim=True)
    sde = sdes.MixSDE(K, GAMMA, SMIN, SMAX, 30)
    states = simulate(x0, mixing_drift, g, {0.3, 1.0})
    for t, x in states.items():
        mean, cov = closed_form(sde, x0, t, mix, K)
        assert_moments(x, mean, cov, slack=0.01)
        # the object's moments are the formulas of method.md
        A, C = mix_moments(t, K, GAMMA, SMIN, SMAX)
        np.testing.assert_allclose(mean.numpy(), A @ x0.numpy(), atol=1e-12)
        np.testing.assert_allclose(cov[0].numpy(), C, rtol=1e-10)


def test_priormix_sde_simulation_matches_closed_form():
    K, avg_len = 2, 3
    # loud start, silent middle (sigma_mix hits its floor), quiet end
    x0 = torch.tensor([[1.0, 1.5, 0.0, 0.0, 0.0, 0.3], [0.5, 0.5, 0.0, 0.0, 0.0, -0.2]],
                      dtype=torch.float64)
    mix = x0.sum(0, keepdim=True)
    sigma = torch.from_numpy(sigma_mix_direct(mix[0].numpy(), avg_len))
    assert sigma.max() / sigma.min() > 100  # the diffusion really varies along samples
    sde = sdes.PriorMixSDE(K, GAMMA, SMIN, SMAX, 30, avg_len=avg_len)
    states = simulate(x0, mixing_drift, lambda t: g(t) * sigma, {0.5, 1.0})
    for t, x in states.items():
        mean, cov = closed_form(sde, x0, t, mix, K)
        assert_moments(x, mean, cov, slack=0.01)
        _, C = mix_moments(t, K, GAMMA, SMIN, SMAX)
        np.testing.assert_allclose(cov.numpy(), sigma.numpy()[:, None, None] ** 2 * C, rtol=1e-10)


def test_ouve_sde_simulation_matches_closed_form():
    K, theta = 3, 1.5
    x0 = X0
    mix = x0.sum(0, keepdim=True) + 0.4  # the OU target need not be consistent with x0
    ybar = mix / K
    sde = sdes.OUVESDE(K, theta, SMIN, SMAX, 30)
    states = simulate(x0, lambda x: theta * (ybar - x), g, {0.3, 1.0})
    for t, x in states.items():
        mean, cov = closed_form(sde, x0, t, mix, K)
        assert_moments(x, mean, cov, slack=0.01)
        _, C = ouve_moments(t, K, theta, SMIN, SMAX)
        np.testing.assert_allclose(cov[0].numpy(), C, rtol=1e-10)
        expected_mean = ybar + math.exp(-theta * t) * (x0 - ybar)
        np.testing.assert_allclose(mean.numpy(), expected_mean.numpy())


@pytest.mark.parametrize("K", [2, 3, 4])
def test_mix_prior_is_mix_over_k_plus_cov_T(K):
    n = 20000
    mix = torch.tensor([[[0.8, -0.3, 0.0]]], dtype=torch.float64)
    sde = sdes.MixSDE(K, GAMMA, SMIN, SMAX, 30)
    x = sde.prior_sampling((n, K, 3), mix.expand(n, 1, 3),
                           generator=torch.Generator().manual_seed(K))
    _, C = mix_moments(1.0, K, GAMMA, SMIN, SMAX)
    assert_moments(x, (mix[0] / K).expand(K, 3), torch.from_numpy(C).expand(3, K, K))


def test_priormix_prior_covariance_is_scaled_by_sigma_mix():
    K, n, avg_len = 2, 20000, 3
    mix = torch.tensor([[[0.8, -0.3, 0.0, 0.0, 2.0]]], dtype=torch.float64)
    sde = sdes.PriorMixSDE(K, GAMMA, SMIN, SMAX, 30, avg_len=avg_len)
    x = sde.prior_sampling((n, K, 5), mix.expand(n, 1, 5),
                           generator=torch.Generator().manual_seed(0))
    _, C = mix_moments(1.0, K, GAMMA, SMIN, SMAX)
    sigma = torch.from_numpy(sigma_mix_direct(mix[0, 0].numpy(), avg_len))
    assert_moments(x, (mix[0] / K).expand(K, 5), sigma[:, None, None] ** 2 * torch.from_numpy(C))


def test_ouve_prior_is_mix_over_k_plus_isotropic_noise():
    K, n = 3, 20000
    mix = torch.tensor([[[0.8, -0.3]]], dtype=torch.float64)
    sde = sdes.OUVESDE(K, 1.5, SMIN, SMAX, 30)
    x = sde.prior_sampling((n, K, 2), mix.expand(n, 1, 2),
                           generator=torch.Generator().manual_seed(0))
    _, C = ouve_moments(1.0, K, 1.5, SMIN, SMAX)
    assert_moments(x, (mix[0] / K).expand(K, 2), torch.from_numpy(C).expand(2, K, K))

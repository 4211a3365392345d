"""Closed-form marginals, operators, Tweedie and argument checks against method.md."""

import functools
import math

import numpy as np
import pytest
import torch

import sdes
from tests.sdes.sde_oracles import (
    GaussianPosterior,
    apply_matrix,
    mix_moments,
    ouve_moments,
    projectors,
    sigma_mix_direct,
)

GAMMA, SMIN, SMAX = 2.0, 0.05, 0.5
TIMES = [0.03, 0.3, 0.7, 1.0]


def dense(sde, std, K: int, n: int = 0) -> np.ndarray:
    """The K x K matrix of ``mult_std(std, .)`` at time sample ``n``, column by column.

    ``std`` must be built for a batch of K identical examples: batch element b holds
    the basis vector e_b, so ``mult_std`` returns the b-th column in batch element b.
    """
    eye = torch.eye(K, dtype=torch.float64)[:, :, None].expand(K, K, std.avg.shape[-1])
    return sde.mult_std(std, eye)[:, :, n].T.numpy()


def batch_of(x: torch.Tensor, K: int) -> torch.Tensor:
    """K copies of a single example ``x (1, C, L)``."""
    return x.expand(K, *x.shape[1:]).contiguous()


@pytest.mark.parametrize("K", [2, 3, 4])
@pytest.mark.parametrize("t", TIMES)
def test_mix_marginal_equals_closed_form(K, t):
    sde = sdes.MixSDE(K, GAMMA, SMIN, SMAX, 30)
    A, cov = mix_moments(t, K, GAMMA, SMIN, SMAX)
    gen = torch.Generator().manual_seed(K)
    x0 = torch.randn(1, K, 5, dtype=torch.float64, generator=gen)
    mix = x0.sum(1, keepdim=True)

    mean, std = sde.marginal_prob(x0, torch.tensor([t], dtype=torch.float64), mix)
    np.testing.assert_allclose(mean[0].numpy(), A @ x0[0].numpy(), rtol=1e-12, atol=1e-12)

    _, std_k = sde.marginal_prob(batch_of(x0, K), torch.full((K,), t, dtype=torch.float64),
                                 batch_of(mix, K))
    L = dense(sde, std_k, K)
    np.testing.assert_allclose(L, L.T, atol=1e-15)
    np.testing.assert_allclose(L @ L, cov, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("K", [2, 3, 4])
def test_mult_std_inv_inverts_mult_std(K):
    sde = sdes.MixSDE(K, GAMMA, SMIN, SMAX, 30)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(TIMES), K, 7, dtype=torch.float64, generator=gen)
    mix = torch.randn(len(TIMES), 1, 7, dtype=torch.float64, generator=gen)
    _, std = sde.marginal_prob(x, torch.tensor(TIMES, dtype=torch.float64), mix)
    torch.testing.assert_close(sde.mult_std_inv(std, sde.mult_std(std, x)), x)
    torch.testing.assert_close(sde.mult_std(std, sde.mult_std_inv(std, x)), x)


@pytest.mark.parametrize("t", TIMES)
def test_priormix_marginal_is_mix_scaled_sample_by_sample(t):
    K, avg_len = 3, 3
    sde = sdes.PriorMixSDE(K, GAMMA, SMIN, SMAX, 30, avg_len=avg_len)
    _, cov = mix_moments(t, K, GAMMA, SMIN, SMAX)
    mix = torch.tensor([[[0.5, -1.0, 2.0, 0.01, 0.0, 0.3]]], dtype=torch.float64)
    sigma = sigma_mix_direct(mix[0, 0].numpy(), avg_len)
    x0 = torch.zeros(K, K, mix.shape[-1], dtype=torch.float64)
    _, std = sde.marginal_prob(x0, torch.full((K,), t, dtype=torch.float64), batch_of(mix, K))
    for n in range(mix.shape[-1]):
        L = dense(sde, std, K, n)
        np.testing.assert_allclose(L, L.T, atol=1e-15)
        np.testing.assert_allclose(L @ L, sigma[n] ** 2 * cov, rtol=1e-10, atol=1e-16)
    x = torch.randn(K, K, mix.shape[-1], dtype=torch.float64)
    torch.testing.assert_close(sde.mult_std_inv(std, sde.mult_std(std, x)), x)


@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("t", TIMES)
def test_ouve_marginal_equals_closed_form(K, t):
    theta = 1.5
    sde = sdes.OUVESDE(K, theta, SMIN, SMAX, 30)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, K, 4, dtype=torch.float64, generator=gen)
    mix = torch.randn(1, 1, 4, dtype=torch.float64, generator=gen)  # need not be sum(x0)
    ybar = mix / K
    mean, _ = sde.marginal_prob(x0, torch.tensor([t], dtype=torch.float64), mix)
    torch.testing.assert_close(mean, ybar + math.exp(-theta * t) * (x0 - ybar))

    _, cov = ouve_moments(t, K, theta, SMIN, SMAX)
    _, std = sde.marginal_prob(batch_of(x0, K), torch.full((K,), t, dtype=torch.float64),
                               batch_of(mix, K))
    L = dense(sde, std, K)
    np.testing.assert_allclose(L @ L, cov, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(L, L.T, atol=1e-15)


def test_drift_and_diffusion_follow_the_definitions():
    K, t = 3, torch.tensor([0.2, 0.9], dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, K, 6, dtype=torch.float64, generator=gen)
    mix = torch.randn(2, 1, 6, dtype=torch.float64, generator=gen)
    rho = SMAX / SMIN
    g = SMIN * rho ** t * math.sqrt(2 * math.log(rho))
    _, Pbar = projectors(K)

    drift, diffusion = sdes.MixSDE(K, GAMMA, SMIN, SMAX, 30).sde(x, t, mix)
    torch.testing.assert_close(drift, -GAMMA * torch.einsum("ij,bjl->bil",
                                                            torch.from_numpy(Pbar), x))
    torch.testing.assert_close(diffusion, g[:, None, None])

    prior = sdes.PriorMixSDE(K, GAMMA, SMIN, SMAX, 30, avg_len=4)
    _, diffusion = prior.sde(x, t, mix)
    sigma = torch.stack([torch.from_numpy(sigma_mix_direct(m[0].numpy(), 4)) for m in mix])
    torch.testing.assert_close(diffusion, g[:, None, None] * sigma[:, None, :])

    drift, diffusion = sdes.OUVESDE(K, 1.5, SMIN, SMAX, 30).sde(x, t, mix)
    torch.testing.assert_close(drift, 1.5 * (mix / K - x))
    torch.testing.assert_close(diffusion, g[:, None, None])


@pytest.mark.parametrize(
    "sde",
    [
        sdes.MixSDE(3, GAMMA, SMIN, SMAX, 30),
        sdes.PriorMixSDE(3, GAMMA, SMIN, SMAX, 30, avg_len=3),
        sdes.OUVESDE(3, 1.5, SMIN, SMAX, 30),
    ],
    ids=["mix", "priormix", "ouve"],
)
def test_perturb_and_tweedie_with_the_conditional_score_recover_x0(sde):
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 3, 8, dtype=torch.float64, generator=gen)
    mix = x0.sum(1, keepdim=True)
    t = torch.tensor([0.05, 0.8], dtype=torch.float64)
    mean, std = sde.marginal_prob(x0, t, mix)
    xt, z, std2 = sde.perturb(x0, t, mix, generator=gen)
    torch.testing.assert_close(xt, mean + sde.mult_std(std, z))
    torch.testing.assert_close(std2.diff, std.diff)
    # score of p(x_t | x0) = -L^{-1} z; Tweedie with it gives x0 back exactly
    score = -sde.mult_std_inv(std, z)
    torch.testing.assert_close(sde.tweedie(xt, t, mix, score), x0)
    # a given z is used as is
    xt3, z3, _ = sde.perturb(x0, t, mix, z=z)
    assert z3 is z and torch.equal(xt3, xt)


@pytest.mark.parametrize("name", ["mix", "priormix", "ouve"])
def test_tweedie_with_exact_gaussian_score_is_the_posterior_mean(name):
    K, t, L = 3, 0.2, 64
    std = [0.3, 0.5, 0.4]
    if name == "ouve":
        sde = sdes.OUVESDE(K, 1.5, SMIN, SMAX, 30)
        moments = functools.partial(ouve_moments, K=K, theta=1.5, smin=SMIN, smax=SMAX)
    else:
        sde = (sdes.MixSDE(K, GAMMA, SMIN, SMAX, 30) if name == "mix"
               else sdes.PriorMixSDE(K, GAMMA, SMIN, SMAX, 30, avg_len=5))
        moments = functools.partial(mix_moments, K=K, gamma=GAMMA, smin=SMIN, smax=SMAX)
    sigma_fn = getattr(sde, "sigma_mix", None)
    post = GaussianPosterior(std, moments, sigma_fn=sigma_fn)
    gen = torch.Generator().manual_seed(4)
    x0 = post.sample_sources(2, L, gen).double()
    mix = x0.sum(1, keepdim=True)
    xt, _, _ = sde.perturb(x0, t, mix, generator=gen)
    tt = torch.full((2,), t, dtype=torch.float64)
    got = sde.tweedie(xt, tt, mix, post.score(xt, tt, mix))
    mean_y, gain, _ = post.posterior_x0(t, mix)
    mean_t, _ = post.cond_mean_cov(t, mix)
    expected = mean_y + apply_matrix(gain, xt - mean_t)
    torch.testing.assert_close(got, expected)
    # E[x0 | x_t, y] always sums to y
    torch.testing.assert_close(got.sum(1, keepdim=True), mix)


def test_prior_mean_noise_std_time_and_copy():
    K = 4
    sde = sdes.MixSDE(K, GAMMA, SMIN, SMAX, 30)
    mix = torch.randn(2, 1, 5)
    torch.testing.assert_close(sde.prior_mean(mix), (mix / K).expand(2, K, 5))
    assert sde.T == 1.0 and sde.N == 30 and sde.n_sources == K
    t = torch.tensor([0.1, 1.0])
    lam1 = SMIN**2 * ((SMAX / SMIN) ** (2 * t) - 1)
    torch.testing.assert_close(sde.noise_std(t), lam1.sqrt())
    ouve = sdes.OUVESDE(K, 1.5, SMIN, SMAX, 30)
    _, cov = ouve_moments(1.0, K, 1.5, SMIN, SMAX)
    torch.testing.assert_close(ouve.noise_std(t)[1].double(),
                               torch.tensor(math.sqrt(cov[0, 0]), dtype=torch.float64))
    other = sde.copy()
    other.N = 5
    assert sde.N == 30 and isinstance(other, sdes.MixSDE) and other.d_lambda == GAMMA
    # a scalar t is broadcast to the batch
    m1, _ = sde.marginal_prob(torch.ones(2, K, 5), 0.5, mix)
    m2, _ = sde.marginal_prob(torch.ones(2, K, 5), torch.full((2,), 0.5), mix)
    torch.testing.assert_close(m1, m2)


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: sdes.MixSDE(1, GAMMA, SMIN, SMAX, 30), "n_sources"),
        (lambda: sdes.MixSDE(2.5, GAMMA, SMIN, SMAX, 30), "n_sources"),
        (lambda: sdes.MixSDE(2, GAMMA, 0.5, 0.5, 30), "sigma_max > sigma_min > 0"),
        (lambda: sdes.MixSDE(2, GAMMA, 0.0, 0.5, 30), "sigma_max > sigma_min > 0"),
        (lambda: sdes.MixSDE(2, GAMMA, 0.6, 0.5, 30), "sigma_max > sigma_min > 0"),
        (lambda: sdes.MixSDE(2, -1.0, SMIN, SMAX, 30), "d_lambda"),
        (lambda: sdes.MixSDE(2, GAMMA, SMIN, SMAX, 0), "N"),
        (lambda: sdes.PriorMixSDE(2, GAMMA, SMIN, SMAX, 30, avg_len=0), "avg_len"),
        (lambda: sdes.OUVESDE(0, 1.5, SMIN, SMAX, 30), "n_sources"),
        (lambda: sdes.OUVESDE(2, float("nan"), SMIN, SMAX, 30), "theta"),
        (lambda: sdes.OUVESDE(2, 1.5, -0.1, SMAX, 30), "sigma_max > sigma_min > 0"),
    ],
)
def test_invalid_arguments_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_invalid_shapes_raise():
    sde = sdes.MixSDE(3, GAMMA, SMIN, SMAX, 30)
    x, mix, t = torch.zeros(2, 3, 8), torch.zeros(2, 1, 8), torch.zeros(2)
    with pytest.raises(ValueError, match=r"\(B, K=3, L\)"):
        sde.sde(torch.zeros(2, 2, 8), t, mix)
    with pytest.raises(ValueError, match="mix must have shape"):
        sde.sde(x, t, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="does not match"):
        sde.marginal_prob(x, t, torch.zeros(2, 1, 7))
    with pytest.raises(ValueError, match="t must have shape"):
        sde.sde(x, torch.zeros(3), mix)
    with pytest.raises(ValueError, match="shape"):
        sde.prior_sampling((2, 2, 8), mix)
    with pytest.raises(ValueError, match="z must have"):
        sde.perturb(x, t, mix, z=torch.zeros(2, 3, 7))

"""SDE.gaussian_source_score: the exact score of x_t for Gaussian sources around mix / K."""

import pytest
import torch

import sdes

VAR = 0.3


def _sdes():
    return [sdes.MixSDE(2, 2.0, 0.05, 0.5, 30), sdes.MixSDE(3, 2.0, 0.05, 0.5, 30),
            sdes.OUVESDE(2, 1.5, 0.05, 0.5, 30), sdes.PriorMixSDE(2, 2.0, 0.05, 0.5, 30, 5)]


def _gaussian_sources(sde, mix, n_draws_axis, generator):
    """x0 = mix / K + u with u = sqrt(VAR) Pbar w, w ~ N(0, I): u ~ N(0, VAR Pbar)."""
    k = sde.n_sources
    w = torch.randn(mix.shape[0], k, n_draws_axis, generator=generator, dtype=mix.dtype)
    return mix / k + VAR**0.5 * (w - w.mean(1, keepdim=True))


@pytest.mark.parametrize("sde", _sdes(), ids=lambda s: f"{type(s).__name__}{s.n_sources}")
def test_matches_the_solve_with_the_full_source_covariance(sde):
    """Against -Cov^{-1} (x - m) with Cov = A (VAR Pbar) A^T + L L^T built as K x K
    matrices for every time sample (an independent assembly of the same Gaussian)."""
    g = torch.Generator().manual_seed(0)
    k, n, b = sde.n_sources, 7, 3
    mix = torch.randn(b, 1, n, generator=g, dtype=torch.float64)
    t = torch.tensor([0.05, 0.5, 1.0], dtype=torch.float64)
    x = torch.randn(b, k, n, generator=g, dtype=torch.float64)
    got = sde.gaussian_source_score(x, t, mix, VAR)
    a_avg, a_diff, coef_b = (c.expand(b, 1, 1) for c in sde.mean_coefs(t[:, None, None]))
    std = sde.marginal_std(t, mix)
    avg, diff = (s.expand(b, 1, n) for s in (std.avg, std.diff))
    p = torch.full((k, k), 1.0 / k, dtype=torch.float64)
    pbar = torch.eye(k, dtype=torch.float64) - p
    for i in range(b):
        a = a_avg[i, 0, 0] * p + a_diff[i, 0, 0] * pbar
        x0_mean = (mix[i] / k).expand(k, n)
        m = a @ x0_mean + coef_b[i, 0, 0] * x0_mean
        for j in range(n):
            ell = avg[i, 0, j] * p + diff[i, 0, j] * pbar
            cov = a @ (VAR * pbar) @ a.T + ell @ ell.T
            want = -torch.linalg.solve(cov, x[i, :, j] - m[:, j])
            torch.testing.assert_close(got[i, :, j], want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sde", _sdes()[:3], ids=lambda s: f"{type(s).__name__}{s.n_sources}")
@pytest.mark.parametrize("t", [0.1, 1.0])
def test_stein_identity_on_forward_simulated_draws(sde, t):
    """Stein: E[s(x_t) (x_t - m)^T] = -I only for the score of the law of x_t. The draws
    come from sde.perturb of Gaussian sources; the same check with a wrong source
    variance must fail, so the tolerance is tight enough to see a wrong score."""
    g = torch.Generator().manual_seed(1)
    k, n = sde.n_sources, 200_000  # time samples are i.i.d. draws
    mix = torch.randn(1, 1, 1, generator=g, dtype=torch.float64).expand(1, 1, n).contiguous()
    x0 = _gaussian_sources(sde, mix, n, g)
    x_t, _, _ = sde.perturb(x0, t, mix, generator=g)
    m = sde.marginal_mean(sde.prior_mean(mix), t, mix)

    def stein_gap(var):
        s = sde.gaussian_source_score(x_t, t, mix, var)
        prod = s[0][:, None, :] * (x_t - m)[0][None, :, :]  # (K, K, n)
        gap = prod.mean(-1) + torch.eye(k, dtype=torch.float64)
        se = prod.std(-1) / n**0.5
        return (gap.abs() / se).max()

    assert stein_gap(VAR) < 5.0
    assert stein_gap(4 * VAR if t < 0.5 else 40 * VAR) > 5.0


def test_rejects_a_negative_variance():
    sde = sdes.MixSDE(2, 2.0, 0.05, 0.5, 30)
    with pytest.raises(ValueError, match="var must be >= 0"):
        sde.gaussian_source_score(torch.zeros(1, 2, 4), 0.5, torch.zeros(1, 1, 4), -1.0)


@pytest.mark.parametrize("sde", _sdes(), ids=lambda s: f"{type(s).__name__}{s.n_sources}")
def test_posterior_mean_is_tweedie_of_the_gaussian_score(sde):
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(3, 1, 9, generator=g, dtype=torch.float64)
    x = torch.randn(3, sde.n_sources, 9, generator=g, dtype=torch.float64)
    t = torch.tensor([0.05, 0.5, 1.0], dtype=torch.float64)
    mean, _ = sde.gaussian_source_posterior(x, t, mix, VAR)
    want = sde.tweedie(x, t, mix, sde.gaussian_source_score(x, t, mix, VAR))
    torch.testing.assert_close(mean, want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(mean.sum(1, keepdim=True), mix)  # the sources sum to mix


@pytest.mark.parametrize("sde", _sdes()[:3], ids=lambda s: f"{type(s).__name__}{s.n_sources}")
@pytest.mark.parametrize("t", [0.05, 0.5, 1.0])
def test_posterior_std_matches_the_monte_carlo_error(sde, t):
    """Sources drawn from the model, x_t from sde.perturb: the error of the posterior
    mean has the posterior variance on every source (to 2 % with 200k draws), while
    the prior variance VAR (1 - 1/K) of x0 around mix / K is clearly larger for t < T."""
    g = torch.Generator().manual_seed(3)
    k, n = sde.n_sources, 200_000
    mix = torch.randn(1, 1, 1, generator=g, dtype=torch.float64).expand(1, 1, n).contiguous()
    x0 = _gaussian_sources(sde, mix, n, g)
    x_t, _, _ = sde.perturb(x0, t, mix, generator=g)
    mean, std = sde.gaussian_source_posterior(x_t, t, mix, VAR)
    err_var = (x0 - mean).pow(2).mean(-1)  # (1, K)
    # Pbar projects out one of K dimensions: each source's share is (1 - 1/K) of it
    want = float(std.flatten()[0]) ** 2 * (1 - 1 / k)
    torch.testing.assert_close(err_var, torch.full_like(err_var, want), rtol=0.02, atol=0)
    if t < 0.5:
        assert want < 0.5 * VAR * (1 - 1 / k)

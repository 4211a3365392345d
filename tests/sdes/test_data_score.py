"""SDE.data_score: the score of x_t given its posterior mean, the inverse of Tweedie."""

import pytest
import torch

import sdes


def _sdes():
    return [sdes.MixSDE(2, 2.0, 0.05, 0.5, 30), sdes.MixSDE(3, 2.0, 0.05, 0.5, 30),
            sdes.OUVESDE(2, 1.5, 0.05, 0.5, 30), sdes.PriorMixSDE(2, 2.0, 0.05, 0.5, 30, 5)]


def _draw(sde, seed=0, b=3, n=50):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, sde.n_sources, n, generator=g, dtype=torch.float64)
    mix = x0.sum(1, keepdim=True)
    t = torch.tensor([0.05, 0.5, 1.0], dtype=torch.float64)
    x = torch.randn(b, sde.n_sources, n, generator=g, dtype=torch.float64)
    return x0, mix, t, x


@pytest.mark.parametrize("sde", _sdes(), ids=lambda s: f"{type(s).__name__}{s.n_sources}")
def test_tweedie_of_data_score_gives_the_estimate_back(sde):
    x0, mix, t, x = _draw(sde)
    back = sde.tweedie(x, t, mix, sde.data_score(x, t, mix, x0))
    torch.testing.assert_close(back, x0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sde", _sdes(), ids=lambda s: f"{type(s).__name__}{s.n_sources}")
def test_is_the_gradient_of_the_log_density_of_a_point_mass(sde):
    """For sources fixed at x0, x_t ~ N(mean_t(x0), L L^T): the data score is the
    gradient of that log-density, taken by autograd through L^{-1}."""
    x0, mix, t, x = _draw(sde, seed=1)
    x = x.requires_grad_(True)
    mean, std = sde.marginal_prob(x0, t, mix)
    logp = -0.5 * sde.mult_std_inv(std, x - mean).pow(2).sum()
    (grad,) = torch.autograd.grad(logp, x)
    torch.testing.assert_close(sde.data_score(x.detach(), t, mix, x0), grad,
                               rtol=1e-9, atol=1e-9)


def test_shape_errors_name_the_argument():
    sde = sdes.MixSDE(2, 2.0, 0.05, 0.5, 30)
    x0, mix, t, x = _draw(sde)
    with pytest.raises(ValueError, match="x0"):
        sde.data_score(x, t, mix, x0[:, :1])

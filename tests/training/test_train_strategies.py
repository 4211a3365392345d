"""Time sampling, source order, PIT and mismatch-step targets against method.md."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from models.training_strategies import (
    draw_training_example,
    order_sources,
    permutations,
    permuted_noise_targets,
    resolve_train_strategy,
    sample_time,
    score_matching_loss,
)
from sdes import OUVESDE, MixSDE, PriorMixSDE

SMIN, SMAX, GAMMA = 0.05, 0.5, 2.0


def mix_sde(k=2):
    return MixSDE(k, GAMMA, SMIN, SMAX, 30)


def lams(t):
    """lam1, lam2 of method.md, written out independently of sdes/."""
    rho = SMAX / SMIN
    lam1 = SMIN**2 * (rho ** (2 * t) - 1)
    lam2 = SMIN**2 * (rho ** (2 * t) - math.exp(-2 * GAMMA * t)) / (1 + GAMMA / math.log(rho))
    return lam1, lam2


def projectors(k):
    p = np.ones((k, k)) / k
    return p, np.eye(k) - p


# ---- strategy names and aliases ------------------------------------------------------
def test_strategy_aliases_and_errors():
    assert resolve_train_strategy() == ("standard", 0.0)
    assert resolve_train_strategy(init_hack=5, init_hack_p=0.25) == ("prior_mismatch_pit", 0.25)
    assert resolve_train_strategy(init_hack=5) == ("prior_mismatch_pit", 0.1)
    assert resolve_train_strategy(init_hack=4, n_steps=20) == ("prior_mismatch_fraction", 0.05)
    assert resolve_train_strategy("prior_mismatch_fraction", n_steps=30)[1] == pytest.approx(1 / 30)
    assert resolve_train_strategy("prior_mismatch_pit", 0.3) == ("prior_mismatch_pit", 0.3)
    for bad in (dict(init_hack=3), dict(init_hack=6), dict(init_hack=True),
                dict(train_strategy="init5"), dict(mismatch_p=0.2),
                dict(train_strategy="prior_mismatch_pit", init_hack=4),
                dict(init_hack_p=0.1), dict(train_strategy="prior_mismatch_pit", mismatch_p=1.5)):
        with pytest.raises(ValueError):
            resolve_train_strategy(**bad)


# ---- time sampling -------------------------------------------------------------------
class LinearNoise:
    """noise_std(t) = t: varprop density 2 t / (T^2 - eps^2)."""

    T = 1.0

    def noise_std(self, t):
        return t


def test_uniform_time_sampling_ks():
    g = torch.Generator().manual_seed(0)
    t = sample_time(mix_sde(), 4000, 0.03, "uniform", generator=g).numpy()
    assert t.min() >= 0.03 and t.max() <= 1.0
    assert stats.kstest(t, stats.uniform(0.03, 0.97).cdf).pvalue > 1e-3


def test_varprop_matches_linear_density():
    eps = 0.03
    cdf = lambda x: (np.clip(x, eps, 1) ** 2 - eps**2) / (1 - eps**2)  # noqa: E731
    g = torch.Generator().manual_seed(1)
    t = sample_time(LinearNoise(), 20000, eps, "varprop", generator=g).numpy()
    assert stats.kstest(t, cdf).pvalue > 1e-3
    # The uniform sampler is clearly rejected by the same test.
    u = sample_time(LinearNoise(), 20000, eps, "uniform", generator=g).numpy()
    assert stats.kstest(u, cdf).pvalue < 1e-6


def test_varprop_matches_mixsde_noise_std():
    eps = 0.03
    dens = lambda s: math.sqrt(lams(s)[0])  # noqa: E731  noise std of MixSDE
    total = integrate.quad(dens, eps, 1.0)[0]
    cdf = np.vectorize(lambda x: integrate.quad(dens, eps, min(max(x, eps), 1.0))[0] / total)
    g = torch.Generator().manual_seed(2)
    t = sample_time(mix_sde(), 5000, eps, "varprop", generator=g).numpy()
    assert stats.kstest(t, cdf).pvalue > 1e-3
    # Histogram against the density, as a second view.
    hist, edges = np.histogram(t, bins=10, range=(eps, 1.0))
    expected = 5000 * np.diff(cdf(edges))
    assert np.all(np.abs(hist - expected) < 5 * np.sqrt(expected) + 5)


# ---- source order --------------------------------------------------------------------
def test_order_sources():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, 50) * torch.tensor([0.1, 1.0, 3.0])[None, :, None]
    power = order_sources(x0, "power")
    energy = power.pow(2).mean(-1)
    assert torch.all(energy[:, :-1] >= energy[:, 1:])
    shuffled = order_sources(x0, "random", g)
    # Every example keeps its sources (as a set) and many orders appear.
    assert torch.allclose(shuffled.sort(dim=1).values, x0.sort(dim=1).values)
    orders = {tuple(int(i) for i in (s.pow(2).mean(-1).argsort())) for s in shuffled}
    assert len(orders) == 6
    assert torch.equal(order_sources(x0, "fixed"), x0)
    with pytest.raises(ValueError):
        order_sources(x0, "alphabetical")


# ---- mismatch step target --------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_mismatch_target_matches_formula(k):
    """z_pi = z + L(T)^{-1} (y/K - mean_T(pi(x0))) with L, mean from method.md."""
    sde, b, n = mix_sde(k), 2, 40
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(b, k, n, generator=g, dtype=torch.float64)
    y = x0.sum(1, keepdim=True)
    z = torch.randn(b, k, n, generator=g, dtype=torch.float64)
    t = torch.ones(b, dtype=torch.float64)
    perms = permutations(k)
    got = permuted_noise_targets(sde, x0, t, y, z, sde.prior_mean(y), perms)

    p, pbar = projectors(k)
    lam1, lam2 = lams(1.0)
    l_inv = p / math.sqrt(lam1) + pbar / math.sqrt(lam2)
    a_t = p + math.exp(-GAMMA) * pbar
    for bi in range(b):
        for pi_idx, pi in enumerate(itertools.permutations(range(k))):
            x0p = x0[bi].numpy()[list(pi)]
            want = z[bi].numpy() + l_inv @ (y[bi].numpy() / k - a_t @ x0p)
            np.testing.assert_allclose(got[bi, pi_idx].numpy(), want, rtol=1e-9, atol=1e-9)


def test_mismatch_steps_start_from_the_prior():
    sde, g = mix_sde(), torch.Generator().manual_seed(4)
    x0 = torch.randn(6, 2, 64, generator=g)
    y = x0.sum(1, keepdim=True)
    ex = draw_training_example(sde, x0, y, t_eps=0.03, time_sampling="uniform",
                               source_order="random", strategy="prior_mismatch_pit",
                               mismatch_p=1.0, generator=g)
    assert torch.all(ex["t"] == 1.0) and ex["use_pit"].all() and ex["mismatch"].all()
    # x_T = y/K + L(T) z, exactly the sampler's prior.
    lam1, lam2 = lams(1.0)
    pz = ex["z"].mean(1, keepdim=True)
    prior = y / 2 + math.sqrt(lam1) * pz + math.sqrt(lam2) * (ex["z"] - pz)
    torch.testing.assert_close(ex["x_t"], prior, rtol=1e-5, atol=1e-5)
    ordinary = draw_training_example(sde, x0, y, t_eps=0.03, time_sampling="uniform",
                                     source_order="fixed", strategy="prior_mismatch_fraction",
                                     mismatch_p=0.0, generator=g)
    assert not ordinary["mismatch"].any() and not ordinary["use_pit"].any()
    assert torch.all(ordinary["t"] < 1.0)


def test_mismatch_fraction_frequency():
    sde, g = mix_sde(), torch.Generator().manual_seed(5)
    x0 = torch.randn(4000, 2, 4, generator=g)
    ex = draw_training_example(sde, x0, x0.sum(1, keepdim=True), t_eps=0.03,
                               time_sampling="uniform", source_order="fixed",
                               strategy="prior_mismatch_fraction", mismatch_p=0.1, generator=g)
    frac = ex["mismatch"].float().mean().item()
    assert abs(frac - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 4000)
    assert not ex["use_pit"].any()  # labelled sources: no permutation


# ---- PIT loss ------------------------------------------------------------------------
def _example(sde, x0, y, t, z):
    mean, std = sde.marginal_prob(x0, t, y)
    return dict(x_t=mean + sde.mult_std(std, z), t=t, std=std, z=z, base=mean, x0=x0)


@pytest.mark.parametrize("sde", [mix_sde(3), PriorMixSDE(3, GAMMA, SMIN, SMAX, 30, avg_len=9),
                                 OUVESDE(3, 1.5, SMIN, SMAX, 30)], ids=["mix", "priormix", "ouve"])
def test_pit_loss_invariant_to_source_shuffle(sde):
    g = torch.Generator().manual_seed(6)
    b, k, n = 4, 3, 80
    x0 = torch.randn(b, k, n, generator=g)
    y = x0.sum(1, keepdim=True)
    t = torch.rand(b, generator=g) * 0.9 + 0.05
    z = torch.randn(b, k, n, generator=g)
    ex = _example(sde, x0, y, t, z)
    score = torch.randn(b, k, n, generator=g)
    shuffled = dict(ex, x0=x0[:, [2, 0, 1]])  # same x_t, targets listed in another order
    for use_pit, same in ((True, True), (False, False)):
        flags = torch.full((b,), use_pit)
        a = score_matching_loss(sde, score, dict(ex, use_pit=flags), y)
        c = score_matching_loss(sde, score, dict(shuffled, use_pit=flags), y)
        assert torch.allclose(a, c, rtol=1e-6) == same


def test_loss_is_the_method_formula_and_pit_picks_the_min():
    sde, g = mix_sde(), torch.Generator().manual_seed(7)
    x0 = torch.randn(3, 2, 30, generator=g)
    y = x0.sum(1, keepdim=True)
    t = torch.tensor([0.2, 0.5, 0.9])
    z = torch.randn(3, 2, 30, generator=g)
    ex = _example(sde, x0, y, t, z)
    score = torch.randn(3, 2, 30, generator=g)
    std = ex["std"]
    plain = (sde.mult_std(std, score) + z).pow(2).mean(dim=(1, 2))
    got = score_matching_loss(sde, score, dict(ex, use_pit=torch.zeros(3, dtype=bool)), y)
    torch.testing.assert_close(got, plain)
    # The swapped-order loss, computed directly: z_swap = L^{-1}(x_t - mean(swap x0)).
    mean_sw, _ = sde.marginal_prob(x0[:, [1, 0]], t, y)
    z_sw = sde.mult_std_inv(std, ex["x_t"] - mean_sw)
    swapped = (sde.mult_std(std, score) + z_sw).pow(2).mean(dim=(1, 2))
    pit = score_matching_loss(sde, score, dict(ex, use_pit=torch.ones(3, dtype=bool)), y)
    torch.testing.assert_close(pit, torch.minimum(plain, swapped), rtol=1e-5, atol=1e-6)


def test_pit_threshold_uses_mismatch_to_noise_ratio():
    sde, g = mix_sde(), torch.Generator().manual_seed(8)
    x0 = torch.randn(200, 2, 32, generator=g)
    y = x0.sum(1, keepdim=True)
    common = dict(t_eps=0.03, time_sampling="uniform", source_order="pit",
                  strategy="standard", mismatch_p=0.0)
    ex = draw_training_example(sde, x0, y, pit_threshold=1.0,
                               generator=torch.Generator().manual_seed(9), **common)
    # Direct ratio: ||exp(-gamma t) Pbar x0||_rms / sqrt(lam1(t)).
    diff = x0 - x0.mean(1, keepdim=True)
    ratio = torch.exp(-GAMMA * ex["t"]) * diff.pow(2).mean((1, 2)).sqrt() / torch.tensor(
        [math.sqrt(lams(float(s))[0]) for s in ex["t"]])
    assert torch.equal(ex["use_pit"], ratio < 1.0)
    assert 0 < ex["use_pit"].sum() < 200
    always = draw_training_example(sde, x0, y, generator=g, **common)
    assert always["use_pit"].all()


def test_mask_excludes_padding():
    sde, g = mix_sde(), torch.Generator().manual_seed(10)
    x0 = torch.randn(2, 2, 40, generator=g)
    y = x0.sum(1, keepdim=True)
    ex = _example(sde, x0, y, torch.tensor([0.3, 0.6]), torch.randn(2, 2, 40, generator=g))
    ex["use_pit"] = torch.zeros(2, dtype=bool)
    mask = (torch.arange(40)[None] < torch.tensor([[25], [40]]))[:, None]
    score = torch.randn(2, 2, 40, generator=g)
    a = score_matching_loss(sde, score, ex, y, mask)
    score2 = score.clone()
    score2[0, :, 25:] = 100.0
    torch.testing.assert_close(score_matching_loss(sde, score2, ex, y, mask), a)
    sq = (sde.mult_std(ex["std"], score) + ex["z"]).pow(2)
    torch.testing.assert_close(a[0], sq[0, :, :25].mean())


# ---- refinement steps ----------------------------------------------------------------
class _Recorder:
    """An ``estimate(x, t, mix)`` that returns ``make(x, t, mix)`` and keeps its inputs."""

    def __init__(self, make):
        self.make, self.calls = make, []

    def __call__(self, x, t, mix):
        self.calls.append((x.clone(), t.clone(), mix.clone()))
        return self.make(x, t, mix)


def _refine_example(estimate, x0, mismatch_p=0.0, refine_p=1.0, seed=7, order="random"):
    sde = mix_sde(x0.shape[1])
    return sde, draw_training_example(
        sde, x0, x0.sum(1, keepdim=True), t_eps=0.03, time_sampling="uniform",
        source_order=order, strategy="prior_mismatch_pit", mismatch_p=mismatch_p,
        generator=torch.Generator().manual_seed(seed), refine_p=refine_p, estimate=estimate)


def test_refinement_around_a_mixture_like_guess_is_the_prior_at_time_t():
    """A guess that does not separate (every estimate y / K) has no trace to leave:
    x_t = y / K + L(t) z at the ordinary t, and the guess saw a prior draw at t = T."""
    x0 = torch.randn(5, 3, 2000, generator=torch.Generator().manual_seed(1))
    y = x0.sum(1, keepdim=True)
    rec = _Recorder(lambda x, t, mix: mix.expand_as(x) / 3)
    sde, ex = _refine_example(rec, x0)
    assert ex["refine"].all() and not ex["mismatch"].any() and ex["use_pit"].all()
    assert torch.all(ex["t"] < 1.0)
    lam1, lam2 = (torch.tensor([lams(float(t))[i] for t in ex["t"]], dtype=torch.float64)
                  [:, None, None] for i in (0, 1))
    pz = ex["z"].mean(1, keepdim=True).double()
    want = y / 3 + lam1.sqrt() * pz + lam2.sqrt() * (ex["z"].double() - pz)
    torch.testing.assert_close(ex["x_t"].double(), want, rtol=1e-5, atol=1e-5)
    (x_end, t_end, mix_seen), = rec.calls
    assert torch.all(t_end == 1.0) and torch.equal(mix_seen, y)
    # the guess's input is a draw of the mixture prior: its sum over sources is y plus
    # noise of variance K lam1(T) per sample, and no trace of the sources is left in it
    lam1_t, _ = lams(1.0)
    resid = x_end.sum(1) - y[:, 0]
    assert abs(float(resid.var()) / (3 * lam1_t) - 1) < 0.05  # 10k samples: sd 0.014


def test_refinement_around_the_true_sources_is_an_ordinary_step():
    """A guess equal to the (shuffled) true sources puts x_t where an ordinary step
    would, and PIT finds the order back: the oracle score has zero loss."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 2, 64, generator=g)
    swap = lambda x: x[:, [1, 0]]  # noqa: E731  the guess comes in the other order
    sde, ex = _refine_example(_Recorder(lambda x, t, mix: swap(x0)), x0, order="fixed")
    mean = sde.marginal_mean(swap(x0), ex["t"], x0.sum(1, keepdim=True))
    torch.testing.assert_close(ex["base"], mean)
    y = x0.sum(1, keepdim=True)
    mean_swapped, std = sde.marginal_prob(swap(x0), ex["t"], y)
    oracle = -sde.mult_std_inv(std, sde.mult_std_inv(std, ex["x_t"] - mean_swapped))
    loss = score_matching_loss(sde, oracle, ex, y)
    assert float(loss.max()) < 1e-9


def test_refinement_frequency_and_arguments():
    x0 = torch.randn(4000, 2, 4, generator=torch.Generator().manual_seed(3))
    rec = _Recorder(lambda x, t, mix: x)
    _, ex = _refine_example(rec, x0, mismatch_p=0.3, refine_p=0.5)
    n = 4000
    for key, p in (("mismatch", 0.3), ("refine", 0.5)):
        frac = ex[key].float().mean().item()
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n), key
    assert not (ex["mismatch"] & ex["refine"]).any()
    assert rec.calls[0][0].shape[0] == int(ex["refine"].sum())
    # refine_p = 0 draws exactly what the paper's strategy draws
    _, a = _refine_example(None, x0, mismatch_p=0.3, refine_p=0.0)
    b = draw_training_example(mix_sde(), x0, x0.sum(1, keepdim=True), t_eps=0.03,
                              time_sampling="uniform", source_order="random",
                              strategy="prior_mismatch_pit", mismatch_p=0.3,
                              generator=torch.Generator().manual_seed(7))
    assert torch.equal(a["x_t"], b["x_t"]) and torch.equal(a["t"], b["t"])
    with pytest.raises(ValueError, match="needs an estimate"):
        _refine_example(None, x0, refine_p=0.2)
    with pytest.raises(ValueError, match="refine_p must be in"):
        _refine_example(rec, x0, mismatch_p=0.6, refine_p=0.5)


@pytest.mark.parametrize("overrides", [
    ["model.train_strategy=prior_mismatch_pit", "model.mismatch_p=0.1"],  # the paper's
    ["model.source_order=pit"],
    ["model/score_model=frame_blstm", "model.score_model.backbone.hidden=16",
     "model.train_strategy=prior_mismatch_pit"],
])  # fmt: skip
def test_training_loss_has_no_host_synchronisation(monkeypatch, overrides):
    """On a GPU, reading a tensor's value on the host (bool, item, ...) waits for the device:
    the loss of the paper's recipe must not read any (here: every such read fails)."""
    from hydra.utils import instantiate

    from tests.training.fixtures import compose_config

    model = instantiate(compose_config(["model/score_model=tiny", *overrides]).model)
    mix_tgt = torch.randn(2, 2, 1500, generator=torch.Generator().manual_seed(0))
    mix = mix_tgt.sum(1, keepdim=True)

    def no_sync(*_args, **_kwargs):
        raise AssertionError("a tensor value was read on the host")

    def device_check(t, message):  # the accelerator branch of require_positive_t
        torch._assert_async((t > 0).all(), message)

    for module in ("networks.ncsnpp", "networks.frame_rnn", "networks.cdiffuse"):
        monkeypatch.setattr(f"{module}.require_positive_t", device_check)

    with monkeypatch.context() as m:
        for name in ("__bool__", "item", "tolist", "__float__", "__int__"):
            m.setattr(torch.Tensor, name, no_sync)
        loss = model.compute_loss(mix, mix_tgt)
    assert torch.isfinite(loss)

"""DiffSepModel pieces: normalisation, EMA, loss, optimisation hooks, separate()."""

import pytest
import torch
from torch import nn

from models.diffsep import denormalize, normalize
from models.ema import EMA
from tests.training.fixtures import OracleScore, ToyMixtures, build_model


def test_normalisation_round_trip_and_mixture_consistency():
    g = torch.Generator().manual_seed(0)
    tgt = 3.0 * torch.randn(4, 3, 500, generator=g) + 0.7
    mix = tgt.sum(1, keepdim=True)
    mix_n, tgt_n, stats = normalize(mix, tgt)
    assert torch.allclose(mix_n.mean(dim=(1, 2)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(mix_n.std(dim=(1, 2)), torch.ones(4), atol=1e-5)
    torch.testing.assert_close(tgt_n.sum(1, keepdim=True), mix_n, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(denormalize(tgt_n, stats), tgt, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(denormalize(mix_n, stats), mix, atol=1e-5, rtol=1e-5)
    # A silent mixture is not blown up: the std is clamped at 1e-5.
    silent_n, _, (_, std) = normalize(torch.zeros(1, 1, 100))
    assert torch.all(std == 1e-5) and torch.all(silent_n == 0)


def test_ema_update_and_exact_swap():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    ema = EMA(net, decay=0.9, warmup=False)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    ema.update(net)
    for name in ("0.weight", "2.bias"):
        want = 0.9 * start[name] + 0.1 * trained[name]
        torch.testing.assert_close(ema.shadow[name], want)
    ema.swap_in(net)
    torch.testing.assert_close(net.state_dict()["0.weight"], ema.shadow["0.weight"])
    with pytest.raises(RuntimeError):
        ema.update(net)
    ema.swap_out(net)
    for k, v in net.state_dict().items():
        assert torch.equal(v, trained[k]), k  # bit-exact restore
    # With warm-up, update n uses min(decay, (1 + n) / (10 + n)): 2/11 at the first.
    warm = EMA(net, decay=0.9)
    first = warm.shadow["0.weight"].clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    warm.update(net)
    torch.testing.assert_close(warm.shadow["0.weight"],
                               (2 / 11) * first + (9 / 11) * net[0].weight)
    for _ in range(200):
        warm.update(net)
    assert warm.current_decay() == 0.9
    # The integer BatchNorm counter is not averaged.
    assert "1.num_batches_tracked" not in ema.shadow
    clone = EMA(net, decay=0.5)
    clone.load_state_dict(ema.state_dict())
    assert clone.decay == 0.9 and torch.equal(clone.shadow["0.weight"], ema.shadow["0.weight"])


def _batch(n=4, length=2000, seed=0):
    ds = ToyMixtures(n, length=length, seed=seed)
    tgt = torch.stack([ds[i][1] for i in range(n)])
    return tgt.sum(1, keepdim=True), tgt


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model("model.train_strategy=prior_mismatch_pit", "model.mismatch_p=0.2",
                        "model.score_model.backbone.residual_channels=16",
                        "model.score_model.backbone.scale_by_sigma=true")
    mix, tgt = _batch()

    def fixed_loss():
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return sum(float(model.compute_loss(mix, tgt, generator=g)) for _ in range(4)) / 4

    before = fixed_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        model.compute_loss(mix, tgt).backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.8 * before, (before, after)


def test_separate_scale_equivariance_and_outputs():
    torch.manual_seed(0)
    model = build_model("model.sampler.N=4").eval()
    mix, _ = _batch(2, 1500)
    est, nfe, states = model.separate(mix, generator=torch.Generator().manual_seed(0),
                                      intermediate=True)
    assert est.shape == (2, 2, 1500) and nfe == 4 * 2 + 1  # + the final Tweedie step
    # Normalisation inside: est(c * mix + d) = c * est(mix) + d / K.
    c, d = 250.0, 3.0
    est2, _, states2 = model.separate(c * mix + d, generator=torch.Generator().manual_seed(0),
                                      intermediate=True)
    torch.testing.assert_close(est2, c * est + d / 2, rtol=1e-3, atol=1e-3 * c)
    # Intermediates are de-normalised too; the first is x_T around mix / K.
    assert len(states2) == len(states) >= 2
    torch.testing.assert_close(states2[0][1], c * states[0][1] + d / 2, rtol=1e-3,
                               atol=1e-3 * c)
    # Defaults from the module's sampler options, overridable per call.
    _, nfe_none, st = model.separate(mix, N=3, corrector="none")
    assert nfe_none == 3 + 1 and st is None


def _raises_value_error(*overrides):
    with pytest.raises(Exception) as info:  # Hydra wraps the error of the target
        build_model(*overrides)
    assert isinstance(info.value.__cause__ or info.value, ValueError), info.value


# Without the final Tweedie step about 6 % of Pbar x0 stays mixed in (method.md).
@pytest.mark.parametrize("final_step, min_db", [(True, 25.0), (False, 10.0)])
def test_separate_with_the_oracle_score_recovers_the_sources(final_step, min_db):
    """Normalisation, sampler wiring and de-normalisation, independent of any network."""
    from functools import partial

    from metrics.separation import pit_si_sdr
    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    mix, tgt = _batch(2, 1200, seed=3)
    mix, tgt = 40.0 * mix + 0.5, 40.0 * tgt + 0.25  # far from unit scale, with an offset
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    _, tgt_n, _ = normalize(mix, tgt)
    model = DiffSepModel(OracleScore(sde, tgt_n), sde, partial(torch.optim.Adam))
    est, _, _ = model.separate(mix, final_step=final_step,
                               generator=torch.Generator().manual_seed(0))
    sdr, _ = pit_si_sdr(est, tgt)
    assert sdr.min() > min_db, sdr
    # In the scale of the input: the estimates sum back to the mixture.
    assert (est.sum(1, keepdim=True) - mix).abs().max() < 0.05 * mix.abs().max()


def test_default_sampler_has_no_end_point_cap():
    """With the exact score the default sampler returns the sources to ~90 dB: the final
    Tweedie step is on by default (without it, ~6 % of the sources' difference is left at
    t_eps and the estimates stop at about 11 to 38 dB)."""
    from functools import partial

    from metrics.separation import pit_si_sdr
    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    mix, tgt = _batch(2, 1200, seed=3)
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    _, tgt_n, _ = normalize(mix, tgt)
    model = DiffSepModel(OracleScore(sde, tgt_n), sde, partial(torch.optim.Adam))
    assert model.sampler["final_step"] is True
    for n_steps in (8, 30):
        est, _, _ = model.separate(mix, N=n_steps, generator=torch.Generator().manual_seed(0))
        assert pit_si_sdr(est, tgt)[0].min() > 60
        capped, _, _ = model.separate(mix, N=n_steps, final_step=False,
                                      generator=torch.Generator().manual_seed(0))
        assert pit_si_sdr(capped, tgt)[0].min() < 40
    assert build_model().sampler["final_step"] is True  # the config default too


def test_sampler_options_left_null_take_the_one_set_of_defaults():
    from functools import partial

    from models.diffsep import DiffSepModel
    from sdes import SAMPLER_DEFAULTS, MixSDE

    sde = MixSDE(2, 2.0, 0.05, 0.5, 12)
    net = OracleScore(sde, torch.zeros(1, 2, 10))
    model = DiffSepModel(net, sde, partial(torch.optim.Adam),
                         sampler={"N": None, "snr": None, "corrector_steps": 3})
    assert model.sampler == {**SAMPLER_DEFAULTS, "N": 12, "corrector_steps": 3}
    config_default = build_model().sampler  # config/model/default.yaml: nulls and sde.N
    assert {k: v for k, v in config_default.items() if k != "N"} == {
        k: v for k, v in SAMPLER_DEFAULTS.items() if k != "N"}


class _OracleMinusGaussian(nn.Module):
    """A "network" that outputs the exact score less the Gaussian-source score: only with
    the skip added back does the model's score become the oracle."""

    def __init__(self, sde, x0_n, var):
        super().__init__()
        self.oracle, self.sde, self.var = OracleScore(sde, x0_n), sde, var

    def forward(self, x, t, mix):
        return self.oracle(x, t, mix) - self.sde.gaussian_source_score(x, t, mix, self.var)


def test_score_skip_adds_the_gaussian_source_score_in_loss_and_sampler():
    from functools import partial

    from metrics.separation import pit_si_sdr
    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    mix, tgt = _batch(2, 1200, seed=4)
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    mix_n, tgt_n, _ = normalize(mix, tgt)
    net = _OracleMinusGaussian(sde, tgt_n, 0.5)
    opt = partial(torch.optim.Adam)  # fixed order: the oracle knows the dataset order
    with_skip = DiffSepModel(net, sde, opt, source_order="fixed", score_skip_var=0.5)
    without = DiffSepModel(net, sde, opt, source_order="fixed")
    t = torch.tensor([0.2, 0.9])
    x = sde.perturb(tgt_n, t, mix_n, generator=torch.Generator().manual_seed(1))[0]
    torch.testing.assert_close(with_skip(x, t, mix_n), OracleScore(sde, tgt_n)(x, t, mix_n))
    # The loss sees the skip: the oracle's loss is that of predicting z exactly (0 on
    # ordinary steps), the bare network's is not.
    loss = lambda m: float(m.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(2)))  # noqa: E731
    assert loss(with_skip) < 1e-8 < 1e-2 < loss(without)
    # The sampler sees it too: the skip model separates like the oracle.
    for model, ok in ((with_skip, True), (without, False)):
        est, _, _ = model.separate(mix, final_step=True, generator=torch.Generator().manual_seed(0))
        sdr, _ = pit_si_sdr(est, tgt)
        assert bool(sdr.min() > 25.0) is ok, sdr
    with pytest.raises(ValueError, match="score_skip_var"):
        DiffSepModel(net, sde, partial(torch.optim.Adam), score_skip_var=0.0)


def test_mismatch_weight_scales_only_the_mismatch_steps():
    mix, tgt = _batch(8, 1200, seed=5)

    def loss(p, w):
        torch.manual_seed(0)  # the same network for every model
        model = build_model("model.train_strategy=prior_mismatch_pit", f"model.mismatch_p={p}",
                            f"model.mismatch_weight={w}")
        with torch.no_grad():
            return float(model.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(3)))

    # All steps mismatch: the weight multiplies the loss; none: it changes nothing.
    assert loss(1.0, 7.0) == pytest.approx(7.0 * loss(1.0, 1.0), rel=1e-5)
    assert loss(0.0, 7.0) == pytest.approx(loss(0.0, 1.0), rel=1e-6)
    # Half of them: the loss is (S_ordinary + w S_mismatch) / B, affine in w with a
    # positive slope and an intercept below the unweighted loss.
    l1, l2, l5 = loss(0.5, 1.0), loss(0.5, 2.0), loss(0.5, 5.0)
    slope = l2 - l1
    assert 0 < slope < l1
    assert l5 == pytest.approx(l1 + 4 * slope, rel=1e-5)
    _raises_value_error("model.mismatch_weight=0")


def test_module_options_are_validated():
    _raises_value_error("model.source_order=loudest")
    _raises_value_error("model.time_sampling=cosine")
    _raises_value_error("model.init_hack=6")
    _raises_value_error("model.pit_threshold=1.0")  # needs source_order pit
    _raises_value_error("+model.sampler.steps=3")
    _raises_value_error("model.val_pesq_mode=xb")
    _raises_value_error("model.n_sources=3")  # the SDE has K = 2
    # a network that outputs sources must not divide its output by t
    _raises_value_error("model.parameterization=data",
                        "model.score_model.backbone.scale_by_sigma=true")
    build_model("model.parameterization=data", "model.score_model.backbone.scale_by_sigma=false")
    model = build_model("model.init_hack=5", "model.init_hack_p=0.3")
    assert (model.train_strategy, model.mismatch_p) == ("prior_mismatch_pit", 0.3)
    model = build_model("model.init_hack=4", "model.sde.N=25")
    assert model.train_strategy == "prior_mismatch_fraction"
    assert model.mismatch_p == pytest.approx(1 / 25)
    assert model.source_names == ["s1", "s2"] and model.n_sources == 2 and model.fs == 8000


class _FixedSources(nn.Module):
    """A "separator" that outputs given sources whatever its input."""

    def __init__(self, x0_n):
        super().__init__()
        self.x0_n = x0_n

    def forward(self, x, t, mix):
        return self.x0_n.expand_as(x)


def test_data_parameterization_turns_a_separator_into_the_score():
    """With ``parameterization: data`` the network's output is E[x0 | x_t]: the true
    sources give the exact point-mass score, zero loss on ordinary steps, and a
    separation like the oracle's; a wrong estimate costs |L^{-1} A (x0_hat - x0)|^2."""
    from functools import partial

    from metrics.separation import pit_si_sdr
    from models.diffsep import DiffSepModel
    from sdes import MixSDE
    from sdes.base import StdOp, apply_op

    mix, tgt = _batch(2, 1200, seed=5)
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    mix_n, tgt_n, _ = normalize(mix, tgt)
    opt = partial(torch.optim.Adam)
    model = DiffSepModel(_FixedSources(tgt_n), sde, opt, source_order="fixed",
                         parameterization="data")
    t = torch.tensor([0.1, 0.8])
    x = sde.perturb(tgt_n, t, mix_n, generator=torch.Generator().manual_seed(1))[0]
    torch.testing.assert_close(model(x, t, mix_n), OracleScore(sde, tgt_n)(x, t, mix_n),
                               rtol=1e-4, atol=1e-3)
    assert float(model.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(2))) < 1e-8
    est, _, _ = model.separate(mix, final_step=True, generator=torch.Generator().manual_seed(0))
    assert pit_si_sdr(est, tgt)[0].min() > 25.0

    # A wrong separator: the loss is the whitened error of the mean, worked out by hand
    # with the draw the loss makes (same generator: t, then z).
    delta = 0.1 * torch.randn(tgt_n.shape, generator=torch.Generator().manual_seed(3))
    wrong = DiffSepModel(_FixedSources(tgt_n + delta), sde, opt, source_order="fixed",
                         parameterization="data")
    got = float(wrong.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(4)))
    from models.training_strategies import draw_training_example
    ex = draw_training_example(
        sde, tgt_n, mix_n, t_eps=wrong.t_eps, time_sampling="uniform", source_order="fixed",
        strategy="standard", mismatch_p=wrong.mismatch_p, pit_threshold=None,
        generator=torch.Generator().manual_seed(4))
    a_avg, a_diff, _ = sde.mean_coefs(ex["t"][:, None, None])
    want = sde.mult_std_inv(ex["std"], apply_op(StdOp(a_avg, a_diff), delta)).pow(2).mean()
    assert got == pytest.approx(float(want), rel=1e-4)
    assert got > 1e-3


def test_parameterization_checks():
    from functools import partial

    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    sde, opt, net = MixSDE(2, 2.0, 0.05, 0.5, 30), partial(torch.optim.Adam), nn.Identity()
    with pytest.raises(ValueError, match="parameterization must be one of"):
        DiffSepModel(net, sde, opt, parameterization="eps")


class _ResidualOracle(nn.Module):
    """Outputs what the data parameterisation with the Gaussian skip needs to give the
    true sources: (x0 - posterior mean) / posterior std, plus a common offset that the
    zero-sum projection must remove. Its input is the posterior mean itself (kept in
    ``seen`` for the test); the posterior std does not depend on x."""

    def __init__(self, sde, x0_n, var):
        super().__init__()
        self.sde, self.x0_n, self.var, self.seen = sde, x0_n, var, None

    def forward(self, x, t, mix):
        self.seen = x
        _, std = self.sde.gaussian_source_posterior(x, t, mix, self.var)
        return (self.x0_n - x) / std + 3.0


def test_data_parameterization_with_the_gaussian_skip():
    from functools import partial

    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    mix, tgt = _batch(2, 1200, seed=6)
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    mix_n, tgt_n, _ = normalize(mix, tgt)
    opt = partial(torch.optim.Adam)
    t = torch.tensor([0.1, 0.8])
    x = sde.perturb(tgt_n, t, mix_n, generator=torch.Generator().manual_seed(1))[0]
    oracle = _ResidualOracle(sde, tgt_n, 0.5)
    model = DiffSepModel(oracle, sde, opt, source_order="fixed", parameterization="data",
                         score_skip_var=0.5)
    torch.testing.assert_close(model(x, t, mix_n), OracleScore(sde, tgt_n)(x, t, mix_n),
                               rtol=1e-4, atol=1e-3)
    # the network sees the posterior mean, not x_t (at t = 0.8 they differ clearly)
    mean, _ = sde.gaussian_source_posterior(x, t, mix_n, 0.5)
    torch.testing.assert_close(oracle.seen, mean)
    assert (mean - x).abs().max() > 0.5
    # Whatever the network outputs, the model's source estimate sums to the mixture and
    # stays within a few posterior stds of the Gaussian posterior mean.
    torch.manual_seed(0)
    noisy = DiffSepModel(_FixedSources(torch.randn(tgt_n.shape) + 5.0), sde, opt,
                         parameterization="data", score_skip_var=0.5)
    est = sde.tweedie(x, t, mix_n, noisy(x, t, mix_n))
    torch.testing.assert_close(est.sum(1, keepdim=True), mix_n, rtol=1e-4, atol=1e-4)
    mean, std = sde.gaussian_source_posterior(x, t, mix_n, 0.5)
    assert ((est - mean).abs() / std).max() < 10.0


class _PerturbedResidualOracle(_ResidualOracle):
    """The residual oracle plus a fixed error eps on its output."""

    def __init__(self, sde, x0_n, var, eps):
        super().__init__(sde, x0_n, var)
        self.eps = eps

    def forward(self, x, t, mix):
        return super().forward(x, t, mix) + self.eps


@pytest.mark.parametrize("strategy", ["standard", "prior_mismatch_pit"])
def test_unit_loss_weighting_is_the_error_of_the_network_output(strategy):
    """With loss_weighting: unit the loss is mean |Pbar eps|^2 for an output error eps,
    at every t and on mismatch steps too; the score weighting fades it out at large t."""
    from functools import partial

    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    mix, tgt = _batch(2, 1200, seed=7)
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    _, tgt_n, _ = normalize(mix, tgt)
    eps = 0.3 * torch.randn(tgt_n.shape, generator=torch.Generator().manual_seed(8))
    want = float((eps - eps.mean(1, keepdim=True)).pow(2).mean())
    net = _PerturbedResidualOracle(sde, tgt_n, 0.5, eps)
    kw = dict(source_order="fixed", parameterization="data", score_skip_var=0.5,
              train_strategy=strategy, mismatch_p=1.0 if strategy != "standard" else None)
    unit = DiffSepModel(net, sde, partial(torch.optim.Adam), loss_weighting="unit", **kw)
    plain = DiffSepModel(net, sde, partial(torch.optim.Adam), **kw)
    for seed in range(3):  # different t
        got = float(unit.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(seed)))
        assert got == pytest.approx(want, rel=1e-3)
    # score weighting at t = T (every step a mismatch step): 1 / 15.6 of it on this SDE
    if strategy != "standard":
        got = float(plain.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(0)))
        assert got < 0.1 * want


def test_unit_loss_weighting_needs_the_data_parameterization_with_the_skip():
    from functools import partial

    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    sde, opt, net = MixSDE(2, 2.0, 0.05, 0.5, 30), partial(torch.optim.Adam), nn.Identity()
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        DiffSepModel(net, sde, opt, loss_weighting="snr")
    for kw in (dict(parameterization="data"), dict(score_skip_var=0.5)):
        with pytest.raises(ValueError, match="set parameterization: data and score_skip_var"):
            DiffSepModel(net, sde, opt, loss_weighting="unit", **kw)


class _SourcesOfMixture(nn.Module):
    """A "separator" that knows the sources of given mixtures (found by the mixture it is
    given, so it works on any subset of the batch), optionally in the swapped order."""

    def __init__(self, mix_n, x0_n, swap=False):
        super().__init__()
        self.mix_n, self.x0_n, self.swap = mix_n, x0_n, swap

    def forward(self, x, t, mix):
        dist = (mix[:, None] - self.mix_n[None]).abs().amax(dim=(2, 3))  # (b, B)
        out = self.x0_n[dist.argmin(dim=1)]
        return out.flip(1) if self.swap else out


@pytest.mark.parametrize("swap", [False, True])
def test_refinement_steps_with_a_perfect_separator_cost_nothing(swap):
    """On refinement steps the state is built around the model's own one-step estimate
    and the target is the true sources in the best order: a separator that is right
    (in either source order) has zero loss, one that is 10 % off does not."""
    from functools import partial

    from models.diffsep import DiffSepModel
    from sdes import MixSDE

    mix, tgt = _batch(4, 900, seed=8)
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    mix_n, tgt_n, _ = normalize(mix, tgt)
    opt = partial(torch.optim.Adam)
    kw = dict(source_order="fixed", parameterization="data", train_strategy="prior_mismatch_pit",
              mismatch_p=0.2, refine_p=0.8)
    model = DiffSepModel(_SourcesOfMixture(mix_n, tgt_n, swap), sde, opt, **kw)
    for seed in range(3):
        loss = model.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(seed))
        assert float(loss) < 1e-8
    off = DiffSepModel(_SourcesOfMixture(mix_n, 1.1 * tgt_n - 0.05 * mix_n, swap), sde, opt,
                       **kw)
    assert float(off.compute_loss(mix, tgt, generator=torch.Generator().manual_seed(0))) > 1e-4


def test_refine_p_is_validated():
    _raises_value_error("model.refine_p=-0.1")
    _raises_value_error("model.train_strategy=prior_mismatch_pit", "model.mismatch_p=0.5",
                        "model.refine_p=0.6")
    model = build_model("model.train_strategy=prior_mismatch_pit", "model.mismatch_p=0.3",
                        "model.refine_p=0.7")
    assert model.refine_p == pytest.approx(0.7)

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
    assert est.shape == (2, 2, 1500) and nfe == 4 * 2
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
    assert nfe_none == 3 and st is None


def _raises_value_error(*overrides):
    with pytest.raises(Exception) as info:  # Hydra wraps the error of the target
        build_model(*overrides)
    assert isinstance(info.value.__cause__ or info.value, ValueError), info.value


# Without the final Tweedie step about 6 % of Pbar x0 stays mixed in (method.md).
@pytest.mark.parametrize("final_step, min_db", [(True, 25.0), (False, 10.0)])
def test_separate_with_the_oracle_score_recovers_the_sources(final_step, min_db):
    """Normalisation, sampler wiring and de-normalisation, independent of any network."""
    from functools import partial

    from evaluation.metrics import pit_si_sdr
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

    from evaluation.metrics import pit_si_sdr
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
    model = build_model("model.init_hack=5", "model.init_hack_p=0.3")
    assert (model.train_strategy, model.mismatch_p) == ("prior_mismatch_pit", 0.3)
    model = build_model("model.init_hack=4", "model.sde.N=25")
    assert model.train_strategy == "prior_mismatch_fraction"
    assert model.mismatch_p == pytest.approx(1 / 25)
    assert model.source_names == ["s1", "s2"] and model.n_sources == 2 and model.fs == 8000

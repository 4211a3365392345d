"""The denoiser probe against an exact score (Tweedie recovers x0) and a zero score."""

from functools import partial

import pytest
import torch
from torch import nn

from evaluation.probe import format_probe, format_trajectory, probe, trajectory
from models.diffsep import DiffSepModel, normalize
from sdes import MixSDE
from tests.training.fixtures import OracleScore, ToyMixtures

TIMES = (0.05, 0.3, 0.6, 1.0)


class ZeroScore(nn.Module):
    def forward(self, x, t, mix):
        return torch.zeros_like(x)


def _setup(score_cls):
    ds = ToyMixtures(3, length=1600, seed=5)
    tgt = torch.stack([ds[i][1] for i in range(3)]) * 3.0
    mix = tgt.sum(1, keepdim=True)
    sde = MixSDE(2, 2.0, 0.05, 0.5, 30)
    score = OracleScore(sde, normalize(mix, tgt)[1]) if score_cls is OracleScore else score_cls()
    return DiffSepModel(score, sde, partial(torch.optim.Adam)), mix, tgt


def test_exact_score_gives_back_the_sources_at_every_t_and_from_the_prior():
    model, mix, tgt = _setup(OracleScore)
    res = probe(model, mix, tgt, times=TIMES, sampler_steps=(30,))
    # Tweedie with the exact score of a point mass returns x0 itself (up to float32).
    assert all(r["tweedie"] > 60.0 for r in res["rows"]), res["rows"]
    assert res["prior"] > 60.0
    # The noisy states themselves lose information as t grows: below zero at T.
    xt = [r["x_t"] for r in res["rows"]]
    assert xt == sorted(xt, reverse=True) and xt[0] > 20.0 and xt[-1] < 0.0, xt
    assert res["sampler"][30] > 10.0  # test_diffsep_module: about 6 % of Pbar x0 left
    assert abs(res["mixture_si_sdr"]) < 10.0
    assert "N = 30" in format_probe(res)


def test_zero_score_is_the_inverse_mean_map_of_x_t():
    """With s = 0, Tweedie for the mixing SDE is P x_t + e^{gamma t} Pbar x_t (the mean
    map (P + e^{-gamma t} Pbar) x0 undone), written out here by hand."""
    from metrics.separation import pit_si_sdr, si_sdr

    model, mix, tgt = _setup(ZeroScore)
    t = 0.3
    res = probe(model, mix, tgt, times=(t,), seed=7)
    mix_n, tgt_n, _ = normalize(mix, tgt)
    z = torch.randn(tgt_n.shape, generator=torch.Generator().manual_seed(7))
    x_t, _, _ = model.sde.perturb(tgt_n, torch.full((3,), t), mix_n, z=z)
    avg = x_t.mean(dim=1, keepdim=True)
    by_hand = avg + torch.exp(torch.tensor(2.0 * t)) * (x_t - avg)
    base = si_sdr(mix_n.expand_as(tgt_n), tgt_n).mean(dim=1)
    want = float((pit_si_sdr(by_hand, tgt_n)[0].mean(dim=1) - base).mean())
    assert res["rows"][0]["tweedie"] == pytest.approx(want, abs=1e-3)
    # At T the inversion multiplies the Pbar noise by e^{gamma T}: worse than x_t itself.
    last = probe(model, mix, tgt, times=(1.0,))["rows"][0]
    assert last["tweedie"] < last["x_t"] - 3.0
    assert res["sampler"] == {}


def test_same_seed_same_numbers_and_bad_times_rejected():
    model, mix, tgt = _setup(ZeroScore)
    assert probe(model, mix, tgt, times=TIMES, seed=3) == probe(model, mix, tgt, times=TIMES,
                                                                seed=3)
    assert probe(model, mix, tgt, times=TIMES, seed=3) != probe(model, mix, tgt, times=TIMES,
                                                                seed=4)
    with pytest.raises(ValueError, match="probe times"):
        probe(model, mix, tgt, times=(0.0, 0.5))


class SegmentOracle(nn.Module):
    """Exact scores for the whole excerpts and for their segments (b-major order), chosen
    by the batch size: a probe that cut or ordered the segments otherwise would score
    sources that do not belong to its mixtures."""

    def __init__(self, sde, mix, tgt, length):
        super().__init__()
        seg = lambda x: torch.stack([x[b, :, i * length:(i + 1) * length]  # noqa: E731
                                     for b in range(x.shape[0])
                                     for i in range(x.shape[-1] // length)])
        self.whole = OracleScore(sde, normalize(mix, tgt)[1])
        self.parts = OracleScore(sde, normalize(seg(mix), seg(tgt))[1])

    def forward(self, x, t, mix):
        return (self.whole if x.shape[0] == self.whole.x0_n.shape[0] else self.parts)(x, t, mix)


def test_segments_are_cut_in_order_and_scored_on_their_own():
    model, mix, tgt = _setup(ZeroScore)
    model.score_model = SegmentOracle(model.sde, mix, tgt, 500)  # 3 segments, 100 dropped
    res = probe(model, mix, tgt, times=(0.5,), sampler_steps=(30,), segments=(500,))
    assert set(res["segments"]) == {(30, 500)}
    assert res["segments"][(30, 500)] > 10.0 and res["sampler"][30] > 10.0
    assert "segments of 500 samples" in format_probe(res)
    with pytest.raises(ValueError, match="segment lengths"):
        probe(model, mix, tgt, times=(0.5,), sampler_steps=(30,), segments=(1601,))


@pytest.mark.parametrize("final_step", [False, True])
def test_trajectory_of_the_exact_score(final_step):
    """With the exact score every one-step estimate along the run is x0 itself, while the
    states go from the prior (below the mixture) to the separated sources; the rows are
    the prior draw and the N states after it, from T down to t_eps (the final Tweedie
    step's t = 0 is the output, not a row)."""
    model, mix, tgt = _setup(OracleScore)
    model.sampler["final_step"] = final_step
    res = trajectory(model, mix, tgt, N=6, seed=2)
    ts = [r["t"] for r in res["rows"]]
    assert len(ts) == 7 and ts[0] == pytest.approx(1.0) and ts[-1] == pytest.approx(model.t_eps)
    assert ts == sorted(ts, reverse=True)
    assert all(r["estimate"] > 60.0 for r in res["rows"]), res["rows"]
    assert res["rows"][0]["state"] < 0.0 < 10.0 < res["rows"][-1]["state"]
    assert res["final"] > (60.0 if final_step else 10.0)
    assert "sampler output" in format_trajectory(res)


def test_trajectory_is_seeded_and_starts_from_the_prior():
    """The first state is the sampler's prior draw for that seed (scored here by hand)."""
    from metrics.separation import pit_si_sdr, si_sdr

    model, mix, tgt = _setup(ZeroScore)
    a, b = trajectory(model, mix, tgt, N=3, seed=5), trajectory(model, mix, tgt, N=3, seed=5)
    assert a == b and a != trajectory(model, mix, tgt, N=3, seed=6)
    mix_n, tgt_n, _ = normalize(mix, tgt)
    x_T = model.sde.prior_sampling(tgt_n.shape, mix_n, generator=torch.Generator().manual_seed(5))
    base = si_sdr(mix_n.expand_as(tgt_n), tgt_n).mean(dim=1)
    want = float((pit_si_sdr(x_T, tgt_n)[0].mean(dim=1) - base).mean())
    assert a["rows"][0]["state"] == pytest.approx(want, abs=1e-4)

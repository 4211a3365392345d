"""K = 4 music stems: PIT over 24 orderings, training steps with each source order."""

import itertools
import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from models.training_strategies import best_permutations, score_matching_loss
from sdes import OUVESDE, MixSDE, PriorMixSDE
from tests.datasets.corpora import make_musdb
from tests.training.fixtures import build_model, compose_config

STEMS = ["drums", "bass", "other", "vocals"]
SDES = [MixSDE(4, 2.0, 0.05, 0.5, 30), PriorMixSDE(4, 2.0, 0.05, 0.5, 30, avg_len=9),
        OUVESDE(4, 1.5, 0.05, 0.5, 30)]


def _example(sde, b=5, n=64, seed=0, mismatch=False):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, 4, n, generator=g) * torch.tensor([1.0, 0.5, 2.0, 0.8])[None, :, None]
    y = x0.sum(1, keepdim=True)
    t = torch.full((b,), sde.T) if mismatch else torch.rand(b, generator=g) * 0.9 + 0.05
    z = torch.randn(b, 4, n, generator=g)
    mean, std = sde.marginal_prob(x0, t, y)
    base = sde.prior_mean(y) if mismatch else mean
    ex = dict(x_t=base + sde.mult_std(std, z), t=t, std=std, z=z, base=base, x0=x0,
              use_pit=torch.ones(b, dtype=torch.bool))
    return ex, y, torch.randn(b, 4, n, generator=g)


def _brute_force(sde, score, ex, y, mask=None):
    """(B, 24) losses, each ordering's target computed from its own permuted sources:
    z_pi = L^{-1}(x_t - mean_t(pi x0)) (method.md, written out without the shortcut)."""
    out = []
    for pi in itertools.permutations(range(4)):
        mean_pi, _ = sde.marginal_prob(ex["x0"][:, list(pi)], ex["t"], y)
        z_pi = sde.mult_std_inv(ex["std"], ex["x_t"] - mean_pi)
        sq = (sde.mult_std(ex["std"], score) + z_pi).pow(2)
        if mask is None:
            out.append(sq.mean(dim=(1, 2)))
        else:
            m = mask.to(sq.dtype)
            out.append((sq * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * 4))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("mismatch", [False, True], ids=["ordinary", "mismatch"])
@pytest.mark.parametrize("sde", SDES, ids=["mix", "priormix", "ouve"])
def test_pit_over_24_orderings_matches_brute_force(sde, mismatch):
    ex, y, score = _example(sde, mismatch=mismatch)
    brute = _brute_force(sde, score, ex, y)
    assert brute.shape == (5, math.factorial(4))
    got = score_matching_loss(sde, score, ex, y)
    torch.testing.assert_close(got, brute.min(dim=1).values, rtol=1e-5, atol=1e-6)
    std_score = sde.mult_std(ex["std"], score)
    assert torch.equal(best_permutations(sde, std_score, ex, y), brute.argmin(dim=1))
    # Without PIT the loss is the dataset order's (ordering 0, the identity).
    fixed = score_matching_loss(sde, score, dict(ex, use_pit=torch.zeros(5, dtype=bool)), y)
    torch.testing.assert_close(fixed, brute[:, 0], rtol=1e-5, atol=1e-6)


def test_pit_with_padding_mask_and_gradient():
    sde = SDES[0]
    ex, y, score = _example(sde, b=3, n=50, seed=1)
    mask = (torch.arange(50)[None] < torch.tensor([[30], [50], [41]]))[:, None]
    score.requires_grad_(True)
    got = score_matching_loss(sde, score, ex, y, mask)
    brute = _brute_force(sde, score, ex, y, mask)
    torch.testing.assert_close(got, brute.min(dim=1).values, rtol=1e-5, atol=1e-6)
    # Same gradient as the minimum over the 24 orderings.
    (g_fast,) = torch.autograd.grad(got.sum(), score)
    (g_brute,) = torch.autograd.grad(brute.min(dim=1).values.sum(), score)
    torch.testing.assert_close(g_fast, g_brute, rtol=1e-5, atol=1e-7)


def test_pit_ordering_follows_a_source_shuffle():
    """A network output that explains the sources in another order is matched to it."""
    sde = SDES[0]
    ex, y, _ = _example(sde, b=4, n=80, seed=2)
    # The exact score of x_t given the shuffled sources has zero loss for that order.
    order = [2, 0, 3, 1]
    mean_sh, _ = sde.marginal_prob(ex["x0"][:, order], ex["t"], y)
    score = -sde.mult_std_inv(ex["std"], sde.mult_std_inv(ex["std"], ex["x_t"] - mean_sh))
    loss = score_matching_loss(sde, score, ex, y)
    assert loss.max() < 1e-8
    fixed = score_matching_loss(sde, score, dict(ex, use_pit=torch.zeros(4, dtype=bool)), y)
    assert fixed.min() > 1.0


def test_fixed_order_validation_scores_stems_in_the_model_order():
    """Fixed order: estimate k is scored as stem k (no permutation); PIT models are matched."""
    fixed = build_model("n_sources=4", "model.source_order=fixed",
                        f"model.source_names=[{','.join(STEMS)}]")
    pit = build_model("n_sources=4", "model.source_order=pit")
    assert fixed.labelled_sources and not pit.labelled_sources
    g = torch.Generator().manual_seed(0)
    tgt = torch.randn(2, 4, 400, generator=g)
    mix = tgt.sum(1, keepdim=True)
    swapped = tgt[:, [1, 0, 3, 2]]
    bad = fixed._separation_metrics(mix, swapped, tgt, None)
    good = pit._separation_metrics(mix, swapped, tgt, None)
    assert all(r["si_sdr"] < 0 for r in bad) and all(r["si_sdr"] > 60 for r in good)
    assert torch.equal(good[0]["matched"], tgt[0])  # matched back to the reference order


@pytest.fixture(scope="module")
def musdb_root(tmp_path_factory):
    return make_musdb(tmp_path_factory.mktemp("musdb"))


def music_config(root, *overrides):
    """The CPU music experiment on the tiny MUSDB-layout corpus."""
    return compose_config([
        "experiment=music-demo", f"datamodule.train.root={root}",
        "datamodule.train.segment_s=0.2", "datamodule.train.samples_per_track=1",
        "datamodule.val.eval_segment_s=0.25", "datamodule.batch_size=2",
        "datamodule.num_workers=0", "model.sampler.N=2", "model.valid_max_sep_batches=1",
        *overrides])


@pytest.mark.parametrize("order", [
    ["model.source_order=fixed", "model.train_strategy=prior_mismatch_fraction",
     "model.mismatch_p=0.5"],
    ["model.source_order=pit", "model.train_strategy=standard", "model.mismatch_p=null"],
    ["model.source_order=pit", "model.train_strategy=prior_mismatch_pit", "model.mismatch_p=0.5"],
], ids=["fixed", "pit", "pit+mismatch"])
def test_k4_training_and_validation_step(musdb_root, order):
    torch.manual_seed(0)
    cfg = music_config(musdb_root, *order)
    dm, model = instantiate(cfg.datamodule), instantiate(cfg.model)
    assert model.n_sources == 4 and model.source_names == STEMS
    before = {k: v.clone() for k, v in model.score_model.state_dict().items()}
    trainer = pl.Trainer(fast_dev_run=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss"]) and torch.isfinite(m["val/loss"])
    for name in STEMS:  # per-stem validation SI-SDR
        assert torch.isfinite(m[f"val/si_sdr_{name}"])
    after = model.score_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_music_experiments_hold_the_documented_choices():
    fixed = compose_config(["experiment=music-separation"])
    pit = compose_config(["experiment=music-separation-pit"])
    synth = compose_config(["experiment=music-separation", "datamodule=synth_music"])
    for cfg in (fixed, pit, synth):
        assert cfg.n_sources == 4 and cfg.fs == 22050
        assert list(cfg.model.source_names) == STEMS
        sm = cfg.model.score_model
        assert (sm.n_fft, sm.hop_length, sm.backbone.image_size) == (1022, 256, 512)
        assert cfg.datamodule.train.segment_s == 6.0 and cfg.datamodule.train.channels == "random"
        assert cfg.datamodule.test.channels == "stereo" and cfg.datamodule.test.fs == 44100
    assert (fixed.model.source_order, fixed.model.train_strategy) == (
        "fixed", "prior_mismatch_fraction")
    assert (pit.model.source_order, pit.model.train_strategy) == ("pit", "prior_mismatch_pit")
    assert synth.datamodule.train.root == "data/synth/musdb18hq"
    assert synth.datamodule.train.valid_tracks == "manifest"


class _Writer:
    """Records what a TensorBoard SummaryWriter would receive."""

    def __init__(self):
        self.audio, self.figures = [], []

    def add_audio(self, tag, x, step, sample_rate):
        self.audio.append((tag, tuple(x.shape), sample_rate))

    def add_figure(self, tag, fig, step, close=True):
        self.figures.append((tag, len(fig.axes)))


def test_validation_media_for_four_stems():
    from models.tb_logging import log_separation_example

    w = _Writer()
    est, ref = torch.randn(4, 2000), torch.randn(4, 2000)
    log_separation_example(w, "val_example_0", ref.sum(0, keepdim=True), est, ref, 11025,
                           STEMS, 10)
    tags = [t for t, _, _ in w.audio]
    assert tags[0] == "val_example_0/mix" and len(tags) == 1 + 2 * 4
    assert {f"val_example_0/est_{n}" for n in STEMS} <= set(tags)
    assert w.figures == [("val_example_0/spectrogram", 2 * 5)]  # mixture row + 4 stems


@pytest.mark.slow
def test_train_script_music_test_runs_the_evaluation(musdb_root, tmp_path):
    """`train.py experiment=music-demo test=true`: stereo test tracks are scored by the
    evaluation pipeline (BSS Eval v4 per stem) into <run>/results/."""
    import json

    from tests.training.test_train_script import run_train

    run = tmp_path / "run"
    run_train(["experiment=music-demo", f"datamodule.train.root={musdb_root}",
               "datamodule.train.segment_s=0.2", "datamodule.train.samples_per_track=1",
               "datamodule.val.eval_segment_s=0.25", "datamodule.batch_size=2",
               "datamodule.num_workers=0", "model.sampler.N=2", "model.sampler.corrector=none",
               "model.valid_max_sep_batches=1", "trainer.limit_val_batches=1",
               "trainer.max_steps=2", "trainer.enable_progress_bar=false", "test=true",
               f"hydra.run.dir={run}"])
    (summary_path,) = (run / "results").glob("*/test_summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["n_ok"] == summary["n_items"] > 0
    assert summary["metric_settings"]["metrics"] == "music"
    assert summary["metric_settings"]["fs"] == 44100
    assert summary["sampler"]["N"] == 2  # the run's sampler settings, not evaluate's defaults
    assert set(summary["metrics"]["sdr"]["per_source"]) == set(STEMS)
    records = json.loads((summary_path.parent / "test.json").read_text())
    assert all(r["source_names"] == STEMS and r["perm"] == [0, 1, 2, 3] for r in records)

"""The discriminative baseline's file (bench/bench_discriminative_baseline.py --save):
the project's inference format, read back exactly, and a starting point for train.py."""

import copy
import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from models.loading import HALF_MIN_NUMEL, STATE_KEY, load_model
from tests.training.fixtures import FAST_MODEL, REPO, compose_config
from train import init_weights


def _bench():
    path = REPO / "bench" / "bench_discriminative_baseline.py"
    spec = importlib.util.spec_from_file_location("bench_discriminative_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trained_model(seed, overrides=FAST_MODEL):
    cfg = compose_config(overrides)
    torch.manual_seed(seed)
    model = instantiate(cfg.model)
    with torch.no_grad():  # stands in for training: weights no fresh model has
        for p in model.score_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, cfg


def test_saved_separator_loads_back_exactly_and_starts_a_diffusion_run(tmp_path):
    bench = _bench()
    model, cfg = _trained_model(0)
    path = tmp_path / "one_shot.pt"
    bench.save_one_shot(path, model, cfg, {"steps": 7})
    mix = torch.randn(2, 1, 1600, generator=torch.Generator().manual_seed(1))
    net, sde, config = bench.load_one_shot(path)
    with torch.no_grad():
        expected = bench.estimate(model.score_model.eval(), model.sde, mix)
        assert torch.equal(bench.estimate(net, sde, mix), expected)
    assert config["model"] == OmegaConf.to_container(cfg.model, resolve=True)
    assert load_model(path).score_model.state_dict().keys() == net.state_dict().keys()

    fresh, _ = _trained_model(1)
    init_weights(fresh, str(path))  # train.py init_from=PATH
    for name, value in model.score_model.state_dict().items():
        assert torch.equal(fresh.score_model.state_dict()[name], value), name


def test_files_of_the_earlier_format_still_load(tmp_path):
    bench = _bench()
    model, cfg = _trained_model(2)
    path = tmp_path / "old.pt"
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    torch.save({"config": OmegaConf.to_container(cfg, resolve=True),
                "state_dict": model.score_model.state_dict()}, path)
    net, _, _ = bench.load_one_shot(path)
    for name, value in model.score_model.state_dict().items():
        assert torch.equal(net.state_dict()[name], value), name


def _adam_steps(model, n, seed):
    opt = model.optimizer_factory(params=model.score_model.parameters())
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        loss = sum((p * torch.randn(p.shape, generator=gen)).sum()
                   for p in model.score_model.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


def _decay_step(model, opt):
    opt.zero_grad()
    sum(p.square().sum() for p in model.score_model.parameters()).backward()
    opt.step()


def test_a_saved_run_resumes_with_its_weights_moments_and_counts(tmp_path):
    bench = _bench()
    model, cfg = _trained_model(3)
    opt = _adam_steps(model, 3, seed=4)
    path = tmp_path / "run.pt"
    curve = [{"step": 3, "minutes": 0.5, "train_loss": -1.0, "si_sdri": 2.0}]
    bench.save_run(path, model, cfg, opt, 3, 12.25, curve, threads=1)

    fresh, _ = _trained_model(5)
    fresh_opt = fresh.optimizer_factory(params=fresh.score_model.parameters())
    step, minutes, got_curve = bench.resume_run(path, fresh, fresh_opt)
    assert (step, got_curve) == (3, curve)
    assert abs(minutes - 12.2) < 0.06  # the separator's meta keeps a tenth of a minute
    for name, value in model.score_model.state_dict().items():
        assert torch.equal(fresh.score_model.state_dict()[name], value), name
    # the same further step from both gives the same weights only if Adam's moments came too
    _decay_step(model, opt)
    _decay_step(fresh, fresh_opt)
    for name, value in model.score_model.state_dict().items():
        assert torch.allclose(fresh.score_model.state_dict()[name], value), name


def test_a_state_of_another_step_or_none_restarts_adam_and_says_so(tmp_path, capsys):
    bench = _bench()
    model, cfg = _trained_model(6)
    opt = _adam_steps(model, 2, seed=7)
    path = tmp_path / "run.pt"
    bench.save_run(path, model, cfg, opt, 2, 1.0, [], threads=1)
    bench.save_one_shot(path, model, cfg, {"steps": 5, "minutes": 2.0})  # newer than its state
    fresh, _ = _trained_model(8)
    fresh_opt = fresh.optimizer_factory(params=fresh.score_model.parameters())
    assert bench.resume_run(path, fresh, fresh_opt)[:2] == (5, 2.0)
    assert fresh_opt.state_dict()["state"] == {}
    assert "of step 2, the separator of step 5: Adam starts afresh" in capsys.readouterr().err

    bench.state_path(path).unlink()
    bench.resume_run(path, fresh, fresh_opt)
    assert "no training state beside" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no such file"):
        bench.resume_run(tmp_path / "missing.pt", fresh, fresh_opt)


def test_a_shipped_float16_partner_resumes_with_its_steps_and_hours(tmp_path):
    from models.pretrained import export

    bench = _bench()
    model, cfg = _trained_model(9)
    bench.save_one_shot(tmp_path / "run.pt", model, cfg, {"steps": 11})
    shipped = export(tmp_path / "run.pt", tmp_path / "partner.ckpt",
                     {"steps": "11", "hours": "0.5"}, half=True)  # as --meta writes them
    fresh, _ = _trained_model(10)
    fresh_opt = fresh.optimizer_factory(params=fresh.score_model.parameters())
    assert bench.resume_run(shipped, fresh, fresh_opt)[:2] == (11, 30.0)
    for name, value in model.score_model.state_dict().items():
        stored = value.half().float() if value.numel() >= HALF_MIN_NUMEL else value
        assert torch.equal(fresh.score_model.state_dict()[name], stored), name


def test_a_float16_file_keeps_the_time_embedding_and_the_diffusion_output(tmp_path):
    """The weights that float16 may round are the large matrices: rounding the Fourier
    frequencies of the time embedding as well moves the score at small t far more than
    rounding every matrix does."""
    from models.pretrained import export

    model, cfg = _blstm_model(2, seed=21)
    full = tmp_path / "full.ckpt"
    _bench().save_one_shot(full, model, cfg)
    half = export(full, tmp_path / "half.ckpt", half=True)
    stored = torch.load(half, map_location="cpu", weights_only=True)[STATE_KEY]
    freqs = "score_model.backbone.fourier.W"
    assert stored[freqs].dtype == torch.float32 and stored[freqs].abs().max() > 20
    assert stored["score_model.backbone.inp.weight"].dtype == torch.float16
    assert half.stat().st_size < 0.6 * full.stat().st_size
    g = torch.Generator().manual_seed(22)
    mix = torch.randn(1, 1, 4000, generator=g)
    x = torch.randn(1, 2, 4000, generator=g)
    t = torch.full((1,), 0.03)

    def score(net):
        with torch.no_grad():
            return net.eval()(x, t, mix)

    ref = score(model.score_model)
    shipped = load_model(half, "cpu").score_model
    every = copy.deepcopy(shipped)  # the frequencies rounded too, as float16 once did
    with torch.no_grad():
        every.backbone.fourier.W.copy_(every.backbone.fourier.W.half().float())

    def moved(net):
        return float((score(net) - ref).norm() / ref.norm())

    assert moved(shipped) < 1e-3 and moved(every) > 5 * moved(shipped)


def test_the_anneal_is_a_half_cosine_over_the_last_minutes():
    bench = _bench()
    budget, anneal, floor = 600.0, 200.0, 0.02
    assert bench.lr_factor(0.0, budget, anneal, floor) == 1.0
    assert bench.lr_factor(400.0, budget, anneal, floor) == 1.0  # where it begins
    assert abs(bench.lr_factor(500.0, budget, anneal, floor) - (1 + floor) / 2) < 1e-12
    # cos(pi / 4) a quarter of the way in
    expected = floor + (1 - floor) * (1 + 2 ** -0.5) / 2
    assert abs(bench.lr_factor(450.0, budget, anneal, floor) - expected) < 1e-12
    assert bench.lr_factor(600.0, budget, anneal, floor) == floor
    assert bench.lr_factor(900.0, budget, anneal, floor) == floor  # the last batch runs over
    grid = [bench.lr_factor(t, budget, anneal, floor) for t in range(0, 601, 5)]
    assert all(a >= b for a, b in zip(grid, grid[1:]))
    assert bench.lr_factor(599.0, budget, 0.0, floor) == 1.0  # no anneal: constant


def test_a_sitting_after_an_annealed_one_starts_at_the_experiments_rate(tmp_path):
    bench = _bench()
    model, cfg = _trained_model(11)
    opt = _adam_steps(model, 2, seed=12)
    base = opt.defaults["lr"]
    for group in opt.param_groups:
        group["lr"] = 0.02 * base
    path = tmp_path / "run.pt"
    bench.save_run(path, model, cfg, opt, 2, 3.0, [], threads=1)
    assert torch.load(path, weights_only=True)["pretrained"]["lr"] == 0.02 * base
    fresh, _ = _trained_model(13)
    fresh_opt = fresh.optimizer_factory(params=fresh.score_model.parameters())
    bench.resume_run(path, fresh, fresh_opt)
    assert fresh_opt.state_dict()["state"]  # the moments came back, the low rate did not
    assert [g["lr"] for g in fresh_opt.param_groups] == [base] * len(fresh_opt.param_groups)


def test_an_anneal_longer_than_the_sitting_is_refused(capsys):
    bench = _bench()
    with pytest.raises(SystemExit):
        bench.main(["--minutes", "5", "--anneal", "6"])
    assert "--anneal 6 must be between 0 and --minutes 5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--minutes", "5", "--anneal", "2", "--anneal-floor", "0"])
    assert "--anneal-floor 0 must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_training_on_a_gpu_that_is_not_there_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        _bench().main(["--device", "cuda", "--minutes", "1"])
    assert "--device cuda: no GPU is visible to torch" in capsys.readouterr().err


def _blstm_model(n_layers, seed):
    """A small FrameBLSTM separator (the FiLM layers moved off their zero start too)."""
    return _trained_model(seed, ["model=cpu", "model.score_model.backbone.hidden=16",
                                 f"model.score_model.backbone.n_layers={n_layers}"])


def test_a_separator_grown_deeper_separates_as_it_did_and_keeps_its_counts(tmp_path):
    bench = _bench()
    model, cfg = _blstm_model(1, seed=14)
    path = tmp_path / "shallow.pt"
    bench.save_one_shot(path, model, cfg, {"steps": 40, "minutes": 6.5})
    deep, _ = _blstm_model(2, seed=15)
    assert bench.grow_run(path, deep) == (40, 6.5)
    mix = torch.randn(2, 1, 4000, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        expected = bench.estimate(model.score_model.eval(), model.sde, mix)
        got = bench.estimate(deep.score_model.eval(), deep.sde, mix)
    assert torch.allclose(got, expected, atol=1e-5)
    assert len(deep.score_model.backbone.rnns) == 2


def test_growing_into_a_network_that_does_not_fit_is_refused(tmp_path, capsys):
    bench = _bench()
    model, cfg = _blstm_model(2, seed=17)
    path = tmp_path / "two.pt"
    bench.save_one_shot(path, model, cfg)
    with pytest.raises(SystemExit, match="cannot grow into the experiment's"):
        bench.grow_run(path, _blstm_model(1, seed=18)[0])
    with pytest.raises(SystemExit, match="needs a FrameBLSTM backbone"):
        bench.grow_run(path, _trained_model(19)[0])
    with pytest.raises(SystemExit, match="--grow-from .*no such file"):
        bench.grow_run(tmp_path / "missing.pt", model)
    with pytest.raises(SystemExit):
        bench.main(["--resume", str(path), "--grow-from", str(path), "--save", str(path)])
    assert "--resume and --grow-from exclude each other" in capsys.readouterr().err

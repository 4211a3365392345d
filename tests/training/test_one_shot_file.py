"""The discriminative baseline's file (bench/bench_discriminative_baseline.py --save):
the project's inference format, read back exactly, and a starting point for train.py."""

import importlib.util

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from models.loading import load_model
from tests.training.fixtures import FAST_MODEL, REPO, compose_config
from train import init_weights


def _bench():
    path = REPO / "bench" / "bench_discriminative_baseline.py"
    spec = importlib.util.spec_from_file_location("bench_discriminative_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trained_model(seed):
    cfg = compose_config(FAST_MODEL)
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

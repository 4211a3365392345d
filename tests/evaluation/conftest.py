"""Shared fixtures of the evaluation tests."""

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A checkpoint as train.py writes it (resolved config + weights), random weights."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = ["+model=default", "model/score_model=tiny", "+n_sources=2", "+fs=8000",
                 "+name=tinysep"]
    with initialize_config_dir(config_dir=str(ROOT / "config"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(config_name=None, overrides=overrides), resolve=True)
    torch.manual_seed(0)
    model = instantiate(OmegaConf.create(cfg).model)
    with torch.no_grad():  # untrained output layers are ~0: make the output depend on weights
        for p in model.score_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save(
        {"state_dict": model.state_dict(), "ema": model.ema.state_dict(), "diffsep_config": cfg},
        path,
    )
    return path

"""The SDE config nodes build the right objects, alone and inside the main config."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import sdes

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXPECTED = {
    "mix": (sdes.MixSDE, {"d_lambda": 2.0, "sigma_min": 0.05, "sigma_max": 0.5, "N": 30}),
    "priormix": (sdes.PriorMixSDE, {"d_lambda": 2.0, "sigma_min": 0.05, "sigma_max": 0.5,
                                    "N": 30, "avg_len": 510}),
    "ouve": (sdes.OUVESDE, {"theta": 1.5, "sigma_min": 0.05, "sigma_max": 0.5, "N": 30}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sde_node_instantiates_with_root_n_sources(name):
    node = OmegaConf.load(CONFIG_DIR / "model" / "sde" / f"{name}.yaml")
    cfg = OmegaConf.create({"n_sources": 3, "model": {"sde": node}})
    sde = instantiate(cfg.model.sde)
    cls, params = EXPECTED[name]
    assert type(sde) is cls and sde.n_sources == 3
    assert {k: getattr(sde, k) for k in params} == params


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sde_group_composes_under_model(name):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model/sde={name}", "n_sources=4"])
    sde = instantiate(cfg.model.sde)
    assert type(sde) is EXPECTED[name][0] and sde.n_sources == 4

"""Helpers for the model tests: randomised weights and Hydra composition."""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "config")


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter O(1)-gain random values: at init (init_scale 0) the output
    layers are ~1e-10, so dependence tests need weights that act like a trained network."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        v = torch.randn(p.shape, generator=g)
        if p.ndim >= 2:
            v /= p[0].numel() ** 0.5  # unit gain per layer
        else:
            v *= 0.1
            if name.endswith("weight"):  # norm scales around 1
                v += 1.0
        p.copy_(v)
    return model


def compose_score_model(name: str, n_sources: int = 2, overrides=()):
    """Compose config/model/score_model/<name>.yaml under a minimal root with n_sources."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name=None,
            overrides=[f"+model/score_model={name}", f"+n_sources={n_sources}", *overrides],
        )
    return cfg.model.score_model


def build_score_model(name: str, n_sources: int = 2, overrides=()):
    return instantiate(compose_score_model(name, n_sources, overrides))

"""Every config in config/model/score_model instantiates, runs, and has the published size."""

from pathlib import Path

import pytest
import torch

from tests.networks.helpers import CONFIG_DIR, build_score_model

CONFIGS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model" / "score_model").glob("*.yaml"))

# published parameter counts of NCSN++ with 6 input and 4 output channels (K = 2)
PUBLISHED = {"ncsnpp_small": 4.14e6, "ncsnpp": 16.46e6, "ncsnpp_large": 65.6e6}


def test_configs_found():
    assert {"tiny", "ncsnpp", "ncsnpp_small", "ncsnpp_large", "cdiffuse"} <= set(CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates_runs_and_counts(name):
    torch.manual_seed(0)
    model = build_score_model(name, n_sources=2).eval()
    n_params = sum(p.numel() for p in model.parameters())
    if name in PUBLISHED:
        assert abs(n_params / PUBLISHED[name] - 1) < 0.005, n_params
    if name == "tiny":
        assert 1e5 < n_params < 1e6
    L = 1600  # 0.2 s at 8 kHz
    x, mix = torch.randn(1, 2, L), torch.randn(1, 1, L)
    with torch.inference_mode():
        y = model(x, torch.tensor([0.5]), mix)
    assert y.shape == (1, 2, L) and torch.isfinite(y).all()


def test_n_sources_sets_channels():
    for K in (3, 4):
        model = build_score_model("ncsnpp_small", n_sources=K)
        assert (model.n_sources, model.backbone.c_in, model.backbone.c_out) == (K, 2 * K + 2, 2 * K)
        assert build_score_model("cdiffuse", n_sources=K).backbone.n_sources == K

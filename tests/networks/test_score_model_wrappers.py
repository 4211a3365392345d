"""Score model wrappers built from the tiny / cdiffuse configs: shapes, gradients, dependence."""

import pytest
import torch

from networks.cdiffuse import CDiffuse
from networks.ncsnpp import NCSNpp
from networks.score_model import STFTScoreModel, WaveformScoreModel
from tests.networks.helpers import build_score_model, randomize_


def _batch(K, L, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, K, L, generator=g)
    mix = torch.randn(B, 1, L, generator=g)
    t = torch.rand(B, generator=g) * 0.9 + 0.05
    return x, t, mix


@pytest.mark.parametrize("K", [2, 3, 4])
def test_tiny_shapes_for_k_sources(K):
    torch.manual_seed(0)
    model = build_score_model("tiny", n_sources=K).eval()
    assert model.n_sources == K
    assert (model.backbone.c_in, model.backbone.c_out) == (2 * (K + 1), 2 * K)
    for L in (1, 100, 1001):
        x, t, mix = _batch(K, L)
        with torch.inference_mode():
            y = model(x, t, mix)
        assert y.shape == (2, K, L) and torch.isfinite(y).all()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomize_(build_score_model("tiny", n_sources=2))


def test_gradients_reach_every_parameter(tiny):
    tiny.train().zero_grad()
    x, t, mix = _batch(2, 1500)
    tiny(x, t, mix).pow(2).mean().backward()
    params = tiny.named_parameters()
    missing = [n for n, p in params if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_eval_is_deterministic(tiny):
    tiny.eval()
    x, t, mix = _batch(2, 777)
    with torch.no_grad():
        torch.testing.assert_close(tiny(x, t, mix), tiny(x, t, mix), rtol=0, atol=0)


def test_output_depends_on_t_and_mixture_per_example(tiny):
    tiny.eval()
    x, t, mix = _batch(2, 900)
    with torch.no_grad():
        y = tiny(x, t, mix)
        t2 = t.clone()
        t2[0] += 0.1
        y_t = tiny(x, t2, mix)
        mix2 = mix.clone()
        mix2[1] *= -1
        y_m = tiny(x, t, mix2)
    assert not torch.allclose(y[0], y_t[0]) and torch.allclose(y[1], y_t[1], atol=1e-6)
    assert not torch.allclose(y[1], y_m[1]) and torch.allclose(y[0], y_m[0], atol=1e-6)


def test_wrapper_errors():
    model = STFTScoreModel(NCSNpp(6, 4, nf=8, ch_mult=(1, 2), attn_resolutions=()), 2)
    x, t, mix = _batch(2, 300)
    with pytest.raises(ValueError, match="mix must have shape"):
        model(x, t, mix[..., :-1])
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2, L\)"):
        model(x[:, :1], t, mix)
    with pytest.raises(ValueError, match="partial"):
        STFTScoreModel(NCSNpp(6, 4, nf=8, ch_mult=(1, 2)), 3)
    with pytest.raises(ValueError, match="partial"):
        WaveformScoreModel(CDiffuse(n_sources=2, n_layers=2), 3)


SMALL_CDIFFUSE = dict(residual_channels=8, n_layers=3, dilation_cycle=3, embedding_dim=16)


@pytest.mark.parametrize("K", [2, 4])
def test_cdiffuse_wrapper_shapes_and_dependence(K):
    torch.manual_seed(0)
    factory = lambda n_sources: CDiffuse(n_sources, **SMALL_CDIFFUSE)  # noqa: E731
    model = randomize_(WaveformScoreModel(factory, K))
    x, t, mix = _batch(K, 333)
    y = model(x, t, mix)
    assert y.shape == (2, K, 333)
    t2 = t.clone()
    t2[0] *= 0.5
    assert not torch.allclose(model(x, t2, mix)[0], y[0])
    assert not torch.allclose(model(x, t, -mix)[1], y[1])
    y.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_cdiffuse_receptive_field():
    """Dilations 1, 2, 4 with kernel 3: an input change moves outputs within +-7 samples only."""
    torch.manual_seed(0)
    net = randomize_(CDiffuse(2, **SMALL_CDIFFUSE)).eval()
    x, t, mix = _batch(2, 101)
    x2 = x.clone()
    x2[:, :, 50] += 1.0
    with torch.no_grad():
        diff = (net(x2, t, mix) - net(x, t, mix)).abs().amax(dim=(0, 1))
    changed = torch.nonzero(diff > 0).flatten()
    assert changed.min() == 43 and changed.max() == 57


def test_cdiffuse_options():
    x, t, mix = _batch(2, 64)
    torch.manual_seed(0)
    a = randomize_(CDiffuse(2, **SMALL_CDIFFUSE, scale_by_sigma=True))
    torch.manual_seed(0)
    b = randomize_(CDiffuse(2, **SMALL_CDIFFUSE, time_embedding="linear"))
    torch.manual_seed(0)
    c = randomize_(CDiffuse(2, **SMALL_CDIFFUSE))
    torch.testing.assert_close(a(x, t, mix) * t[:, None, None], c(x, t, mix))
    assert not torch.allclose(b(x, t, mix), c(x, t, mix))
    with pytest.raises(ValueError, match="t > 0"):
        c(x, torch.zeros(2), mix)
    with pytest.raises(ValueError, match="time_embedding"):
        CDiffuse(2, time_embedding="cubic")

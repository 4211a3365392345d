"""NCSN++ backbone: structure, options that must change the network, input checks."""

import pytest
import torch

from networks.layers.blocks import AttnBlock, ResnetBlockBigGAN, ResnetBlockDDPM
from networks.ncsnpp import NCSNpp
from tests.networks.helpers import randomize_

# a small network on 32 x 8 inputs: two levels, attention at resolution 16 (level 1)
SMALL = dict(
    num_channels_in=4, num_channels_out=2, nf=8, ch_mult=(1, 2), num_res_blocks=1,
    attn_resolutions=(16,), image_size=32,
)


def _run(seed=0, train=False, t=None, **overrides):
    torch.manual_seed(seed)
    net = randomize_(NCSNpp(**{**SMALL, **overrides}), seed)
    net.train(train)
    g = torch.Generator().manual_seed(123)
    x = torch.randn(2, SMALL["num_channels_in"], overrides.get("image_size", 32), 8, generator=g)
    t = torch.tensor([0.3, 0.8]) if t is None else t
    return net, net(x, t)


def _count(cls, net):
    return sum(isinstance(m, cls) for m in net.modules())


def test_published_structure():
    """7 levels, 2 blocks: 14 + 6 (down) + 2 (mid) + 21 + 6 (up) BigGAN blocks; attention
    at resolution 16 = level 4: 2 in the encoder, 1 in the middle, 1 in the decoder."""
    net = NCSNpp(6, 4, nf=8)
    assert _count(ResnetBlockBigGAN, net) == 14 + 6 + 2 + 21 + 6
    assert _count(AttnBlock, net) == 4
    blocks = [b for b in net.modules() if isinstance(b, ResnetBlockBigGAN)]
    assert sum(b.resample is not None for b in blocks) == 12


def test_output_shape_and_finite():
    _, y = _run()
    assert y.shape == (2, 2, 32, 8) and torch.isfinite(y).all()


# options whose change must alter the output of the same random network
CHANGES = [
    dict(nf=12),
    dict(ch_mult=(1, 1)),
    dict(num_res_blocks=2),
    dict(attn_resolutions=()),
    dict(fir=False),
    dict(fir_kernel=(1, 1)),
    dict(skip_rescale=False),
    dict(resblock_type="ddpm"),
    dict(progressive="none"),
    dict(progressive="residual"),
    dict(progressive_input="none"),
    dict(progressive_input="residual"),
    dict(progressive_combine="cat"),
    dict(embedding_type="positional"),
    dict(fourier_scale=4.0),
    dict(conditional=False),
    dict(centered=False),
    dict(scale_by_sigma=False),
    dict(num_channels_out=3),
]


def _ident(change):
    return "-".join(f"{k}={v}" for k, v in change.items())


@pytest.mark.parametrize("change", CHANGES, ids=_ident)
def test_each_option_changes_the_network(change):
    _, y0 = _run()
    _, y1 = _run(**change)
    assert torch.isfinite(y1).all()
    assert y1.shape != y0.shape or not torch.allclose(y0, y1, rtol=1e-4, atol=1e-6)


def test_resamp_with_conv_changes_ddpm_network_and_is_refused_for_biggan():
    _, y0 = _run(resblock_type="ddpm")
    _, y1 = _run(resblock_type="ddpm", resamp_with_conv=False)
    assert not torch.allclose(y0, y1, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="resamp_with_conv"):
        NCSNpp(**SMALL, resamp_with_conv=False)


def test_init_scale_changes_output_at_initialisation():
    x, t = torch.randn(1, 4, 32, 8), torch.tensor([0.5])
    torch.manual_seed(0)
    y0 = NCSNpp(**SMALL)(x, t)
    torch.manual_seed(0)
    y1 = NCSNpp(**SMALL, init_scale=1.0)(x, t)
    assert not torch.allclose(y0, y1)


def test_dropout_is_active_in_training_only():
    net, y_a = _run(train=True, dropout=0.5)
    y_b = net(*_inputs())
    assert not torch.allclose(y_a, y_b)
    net.eval()
    torch.testing.assert_close(net(*_inputs()), net(*_inputs()))


def _inputs():
    g = torch.Generator().manual_seed(123)
    return torch.randn(2, 4, 32, 8, generator=g), torch.tensor([0.3, 0.8])


def _pair(**options):
    """Two networks with identical weights (and Fourier features) differing in options."""
    nets = []
    for opts in options.values():
        torch.manual_seed(0)
        nets.append(randomize_(NCSNpp(**SMALL, **opts)).eval())
    return nets


def test_scale_by_sigma_divides_features_by_t():
    """Same weights: (out_scaled - b) * t == out_plain - b (the 1x1 output layer is affine)."""
    a, b = _pair(a=dict(scale_by_sigma=True), b=dict(scale_by_sigma=False))
    x, t = _inputs()
    bias = a.output_layer.bias[None, :, None, None]
    torch.testing.assert_close((a(x, t) - bias) * t[:, None, None, None], b(x, t) - bias)


def test_channels_last_is_numerically_the_same():
    a, b = _pair(a=dict(channels_last=True), b=dict(channels_last=False))
    x, t = _inputs()
    torch.testing.assert_close(a(x, t), b(x, t), rtol=1e-4, atol=1e-5)


def test_output_depends_on_t():
    net, y0 = _run()
    _, y1 = _run(t=torch.tensor([0.31, 0.8]))
    assert not torch.allclose(y0[0], y1[0]) and torch.allclose(y0[1], y1[1], atol=1e-6)


@pytest.mark.parametrize("pi", ["none", "input_skip", "residual"])
@pytest.mark.parametrize("p", ["none", "output_skip", "residual"])
@pytest.mark.parametrize("rb", ["biggan", "ddpm"])
def test_option_grid_runs(rb, p, pi):
    _, y = _run(resblock_type=rb, progressive=p, progressive_input=pi)
    assert y.shape == (2, 2, 32, 8) and torch.isfinite(y).all()


def test_ddpm_blocks_used():
    net = NCSNpp(**SMALL, resblock_type="ddpm")
    assert _count(ResnetBlockDDPM, net) > 0 and _count(ResnetBlockBigGAN, net) == 0


def test_bad_inputs_raise():
    net = NCSNpp(**SMALL)
    t = torch.tensor([0.5])
    with pytest.raises(ValueError, match="image_size"):
        net(torch.randn(1, 4, 16, 8), t)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 4, 32, 7), t)
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(1, 3, 32, 8), t)
    with pytest.raises(ValueError, match="t > 0"):
        net(torch.randn(1, 4, 32, 8), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="progressive"):
        NCSNpp(**SMALL, progressive="outputskip")
    with pytest.raises(ValueError, match="GroupNorm"):
        NCSNpp(**{**SMALL, "nf": 2})

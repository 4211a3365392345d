"""FrameBLSTM: shapes, whole-utterance context, time conditioning, the sigma scaling,
gradients through the STFT wrapper, and clear errors on bad input."""

import pytest
import torch

from networks.frame_rnn import FrameBLSTM
from tests.networks.helpers import build_score_model, randomize_


def small(**kw):
    args = dict(num_channels_in=6, num_channels_out=4, n_freqs=9, hidden=12, n_layers=2,
                embed_dim=8)
    args.update(kw)
    torch.manual_seed(0)
    return randomize_(FrameBLSTM(**args)).eval()


def test_shapes_any_frame_count():
    net = small()
    for T in (1, 7, 40):
        y = net(torch.randn(3, 6, 9, T), torch.rand(3) + 0.1)
        assert y.shape == (3, 4, 9, T) and torch.isfinite(y).all()


def test_first_frame_depends_on_last_frame():
    """The BLSTM gives every frame the whole utterance: moving only the last input frame
    changes the first output frame (and a bin-local change reaches every bin)."""
    net = small().double()
    x, t = torch.randn(1, 6, 9, 8, dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)
    x2 = x.clone()
    x2[0, 0, 3, -1] += 1.0
    with torch.no_grad():
        d = (net(x2, t) - net(x, t)).abs()
    assert d[..., 0].min() > 1e-9  # every bin of the first frame moved (float64 noise: 1e-16)
    assert d[..., 0].max() > 1e-4


def test_time_conditioning_changes_the_output():
    net = small(scale_by_sigma=False)
    x = torch.randn(1, 6, 9, 10).expand(2, -1, -1, -1)
    with torch.no_grad():
        y = net(x, torch.tensor([0.1, 0.8]))
    assert (y[0] - y[1]).abs().max() > 1e-3


def test_scale_by_sigma_divides_the_output_by_t():
    net, plain = small(scale_by_sigma=True), small(scale_by_sigma=False)
    plain.load_state_dict(net.state_dict())
    x, t = torch.randn(2, 6, 9, 10), torch.tensor([0.05, 0.7])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t) * t[:, None, None, None], plain(x, t))


def test_batch_items_are_independent():
    net = small()
    x, t = torch.randn(4, 6, 9, 12), torch.rand(4) + 0.1
    with torch.no_grad():
        full = net(x, t)
        one = torch.cat([net(x[i : i + 1], t[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(full, one, rtol=1e-4, atol=1e-5)


def test_every_parameter_gets_a_gradient_through_the_stft_wrapper():
    """Through the inverse magnitude compression (whose derivative is zero at 0) no layer
    may start dead. The FiLM layers start at zero (the identity), so the time MLP behind
    them gets its first gradient after one optimiser step."""
    torch.manual_seed(0)
    model = build_score_model("frame_blstm", n_sources=2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, mix = torch.randn(1, 2, 2000), torch.randn(1, 1, 2000)
    dead = []
    for _ in range(2):
        opt.zero_grad()
        model(x, torch.tensor([0.5]), mix).pow(2).mean().backward()
        dead.append({n for n, p in model.named_parameters()
                     if p.grad is None or not p.grad.abs().sum() > 0})
        opt.step()
    assert dead[0] and all(n.startswith("backbone.temb.") for n in dead[0])
    assert not dead[1]


@pytest.mark.parametrize("K", [2, 3])
def test_wrapper_sets_channels_for_k_sources(K):
    model = build_score_model("frame_blstm", n_sources=K)
    assert (model.backbone.c_in, model.backbone.c_out) == (2 * K + 2, 2 * K)
    L = 1234  # any length: no frame padding
    with torch.no_grad():
        y = model(torch.randn(2, K, L), torch.tensor([0.3, 0.6]), torch.randn(2, 1, L))
    assert y.shape == (2, K, L)


def test_bad_input_errors():
    net = small()
    with pytest.raises(ValueError, match="n_freqs = n_fft // 2 \\+ 1"):
        net(torch.randn(1, 6, 8, 5), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="t must have shape"):
        net(torch.randn(2, 6, 9, 5), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="t > 0"):
        net(torch.randn(1, 6, 9, 5), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="embed_dim must be even"):
        FrameBLSTM(embed_dim=7)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        FrameBLSTM(hidden=0)


def test_a_network_grown_deeper_computes_what_the_shallow_one_did():
    """load_shallower: the trained layers first, the new one the identity (its output
    projection zero), so the outputs match; the grown layer then learns (its projection
    gets a gradient) and, once moved, changes the output."""
    shallow = small(n_layers=2, conv_channels=3)
    torch.manual_seed(1)
    deep = randomize_(FrameBLSTM(num_channels_in=6, num_channels_out=4, n_freqs=9, hidden=12,
                                 n_layers=3, embed_dim=8, conv_channels=3)).eval()
    assert deep.load_shallower(shallow.state_dict()) == 1
    x, t = torch.randn(2, 6, 9, 11), torch.rand(2) + 0.1
    with torch.no_grad():
        assert torch.allclose(deep(x, t), shallow(x, t), atol=1e-6)
    for name, value in shallow.state_dict().items():
        assert torch.equal(deep.state_dict()[name], value), name
    deep(x, t).square().sum().backward()
    assert deep.proj[2].weight.grad.abs().max() > 0
    with torch.no_grad():
        deep.proj[2].weight.add_(0.1 * torch.randn_like(deep.proj[2].weight))
        assert not torch.allclose(deep(x, t), shallow(x, t), atol=1e-3)
    assert small(n_layers=2).load_shallower(small(n_layers=2).state_dict()) == 0


def test_growing_from_a_deeper_or_other_network_is_refused():
    deep, shallow = small(n_layers=3), small(n_layers=2)
    with pytest.raises(ValueError, match="cannot grow a FrameBLSTM of 3 layers into one of 2"):
        shallow.load_shallower(deep.state_dict())
    with pytest.raises(ValueError, match="lacks .*conv1"):
        small(n_layers=3, conv_channels=2).load_shallower(shallow.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch"):
        small(n_layers=3, hidden=16).load_shallower(shallow.state_dict())

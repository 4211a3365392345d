"""STFT wrapper options: complex-mask outputs on the mixture's STFT, the mask+spectrum
sum, log-magnitude input channels, and FrameBLSTM's convolutional front end."""

import math

import pytest
import torch

from networks.frame_rnn import FrameBLSTM
from networks.score_model import STFTScoreModel
from networks.spec import STFT
from tests.networks.helpers import build_score_model, randomize_


class _Fixed(torch.nn.Module):
    """Backbone that returns given channels (B, C_out, F, T) whatever its input."""

    def __init__(self, num_channels_in, num_channels_out, make):
        super().__init__()
        self.c_in, self.c_out, self.make = num_channels_in, num_channels_out, make
        self.seen = None

    def forward(self, X, t):
        self.seen = X
        return self.make(X)


def _model(make, K=2, **kw):
    return STFTScoreModel(lambda **c: _Fixed(**c, make=make), n_sources=K,
                          frame_multiple=1, **kw)


def _signals(K=2, L=4000, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, K, L, generator=g)
    return x, x.sum(1, keepdim=True)


def _real_masks(values, F_, T_):
    """2K channels of real masks ``values[k]`` (imaginary parts 0), batch of 2."""
    chans = []
    for v in values:
        chans += [torch.full((F_, T_), float(v)), torch.zeros(F_, T_)]
    return torch.stack(chans)[None].expand(2, -1, -1, -1)


@pytest.mark.parametrize("values", [(1.0, 0.0), (0.3, 0.7), (-0.5, 2.0)])
def test_real_constant_masks_scale_the_mixture(values):
    model = _model(lambda X: _real_masks(values, X.shape[2], X.shape[3]), output="mask")
    x, mix = _signals()
    out = model(x, torch.tensor([0.5, 0.9]), mix)
    for k, v in enumerate(values):
        torch.testing.assert_close(out[:, k], v * mix[:, 0], rtol=1e-4, atol=1e-4)


def test_oracle_complex_masks_give_the_sources_back():
    """A complex mask S_k / Y per bin (where Y != 0) turns the mixture into source k: the
    mask output can represent any separation whose STFT the mixture covers."""
    x, mix = _signals(K=3, L=3001)
    stft = STFT(510, 128)
    pad = 510 - 128
    S = stft.stft(torch.nn.functional.pad(x, (0, pad)))
    Y = stft.stft(torch.nn.functional.pad(mix, (0, pad)))
    M = S / Y
    chans = torch.view_as_real(M).permute(0, 1, 4, 2, 3).reshape(2, 6, *M.shape[-2:])
    model = _model(lambda X: chans, K=3, output="mask")
    torch.testing.assert_close(model(x, torch.tensor([0.2, 0.4]), mix), x, rtol=1e-3,
                               atol=1e-3)


def test_mask_plus_spectrum_is_the_sum_of_both():
    """4K channels: masks first (here 1 for source 1, 0 for source 2), then the
    compressed spectrum (here the input's own, which the spectrum output inverts)."""
    x, mix = _signals()

    def make(X):
        return torch.cat([_real_masks((1.0, 0.0), X.shape[2], X.shape[3]), X[:, :4]], dim=1)

    model = _model(make, output="mask+spectrum")
    assert (model.backbone.c_in, model.backbone.c_out) == (6, 8)
    out = model(x, torch.tensor([0.5, 0.5]), mix)
    torch.testing.assert_close(out, x + torch.cat([mix, torch.zeros_like(mix)], 1),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("K", [2, 3])
def test_log_magnitude_channels_of_a_sinusoid(K):
    """A sinusoid of amplitude A at the centre of bin k0 has |X| = A N / 4 under a periodic
    Hann window of N samples (away from the edges): its log-magnitude channel is
    log((A N / 4)^2 + 1e-6) / 10 there, and -6 / (10 / ln 10) where the signal is 0."""
    N, k0, A, L = 510, 40, 0.7, 6000
    n = torch.arange(L, dtype=torch.float64)
    tone = (A * torch.cos(2 * math.pi * k0 * n / N)).float()
    x = torch.zeros(1, K, L)
    x[0, 0] = tone
    mix = x.sum(1, keepdim=True)
    model = _model(lambda X: X[:, : 2 * K], K=K, log_magnitude=True)
    model(x, torch.tensor([0.5]), mix)
    seen = model.backbone.seen
    assert (model.backbone.c_in, model.backbone.c_out) == (3 * (K + 1), 2 * K)
    assert seen.shape[1] == 3 * (K + 1)
    logmag = seen[0, 2 * (K + 1):]  # channels: x_1..x_K, mix
    want = math.log((A * N / 4) ** 2 + 1e-6) / 10
    mid = slice(5, logmag.shape[-1] - 8)
    torch.testing.assert_close(logmag[0, k0, mid], torch.full_like(logmag[0, k0, mid], want),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logmag[K, k0, mid], logmag[0, k0, mid])  # the mixture
    silent = torch.full_like(logmag[1], math.log(1e-6) / 10)
    torch.testing.assert_close(logmag[1], silent)  # source 2 is all zeros


def test_wrapper_option_errors():
    with pytest.raises(ValueError, match="output must be one of"):
        _model(lambda X: X, output="masks")
    model = _model(lambda X: X[:, :4], output="mask")
    with pytest.raises(ValueError, match="needs the mixture's STFT"):
        model.synthesis(torch.zeros(1, 4, 256, 3), 3, 256)


def _conv_net(**kw):
    args = dict(num_channels_in=6, num_channels_out=4, n_freqs=24, hidden=8, n_layers=1,
                embed_dim=8, conv_channels=5, scale_by_sigma=False)
    args.update(kw)
    torch.manual_seed(0)
    return randomize_(FrameBLSTM(**args)).double().eval()


def test_conv_front_end_receptive_field_on_the_bin_path():
    """With the frame path switched off (output layer zero), an output bin depends on the
    input through the 3x3 and the 5x3 (dilated 2 along frequency) convolutions only:
    +-1 + 4 = +-5 bins and +-1 + 1 = +-2 frames around a changed input bin."""
    net = _conv_net()
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.zero_()
    x, t = torch.randn(1, 6, 24, 15, dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    x2 = x.clone()
    x2[0, 2, 11, 7] += 1.0
    with torch.no_grad():
        d = (net(x2, t) - net(x, t)).abs().amax(dim=(0, 1))
    f_moved, t_moved = torch.nonzero(d > 1e-12, as_tuple=True)
    assert (f_moved.min(), f_moved.max()) == (6, 16)
    assert (t_moved.min(), t_moved.max()) == (5, 9)


def test_conv_front_end_is_time_conditioned():
    net = _conv_net()
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.zero_()
    x = torch.randn(1, 6, 24, 10, dtype=torch.float64).expand(2, -1, -1, -1)
    with torch.no_grad():
        y = net(x, torch.tensor([0.1, 0.8], dtype=torch.float64))
    assert (y[0] - y[1]).abs().max() > 1e-3


def test_conv_front_end_errors_and_parameter_count():
    with pytest.raises(ValueError, match="conv_channels must be >= 0"):
        FrameBLSTM(conv_channels=-1)
    plain, conv = FrameBLSTM(6, 4, 24, 8, 1, 8), FrameBLSTM(6, 4, 24, 8, 1, 8, conv_channels=5)
    extra = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in plain.parameters())
    # conv1 6->5 (3x3), conv_t 32->5, conv2 5->5 (5x3), and 5 more input channels per bin
    # in the frame projection (24 bins -> 8 hidden) and in the 1x1 skip (-> 4 outputs)
    assert extra == (6 * 5 * 9 + 5) + (32 * 5 + 5) + (5 * 5 * 15 + 5) + 5 * 24 * 8 + 5 * 4


def test_mask_model_with_conv_front_trains_every_parameter():
    torch.manual_seed(0)
    model = build_score_model("frame_blstm", n_sources=2, overrides=[
        "model.score_model.output=mask", "model.score_model.log_magnitude=true",
        "model.score_model.backbone.conv_channels=4"])
    assert (model.backbone.c_in, model.backbone.c_out) == (9, 4)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, mix = torch.randn(1, 2, 2000), torch.randn(1, 1, 2000)
    for _ in range(2):
        opt.zero_grad()
        model(x, torch.tensor([0.5]), mix).pow(2).mean().backward()
        dead = [n for n, p in model.named_parameters()
                if p.grad is None or not p.grad.abs().sum() > 0]
        opt.step()
    assert not dead

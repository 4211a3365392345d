"""Magnitude compression and STFT helpers: closed forms, inverses and round trips."""

import math

import numpy as np
import pytest
import torch

from networks.score_model import STFTScoreModel
from networks.spec import STFT, SpecCompression


def _complex(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)) * 3
    X[..., 0] = 0  # exact zeros: the phase convention and gradients must hold there
    return X


@pytest.mark.parametrize("transform", ["exponent", "log", "none"])
@pytest.mark.parametrize("learnable", [False, True])
def test_compression_round_trip(transform, learnable):
    comp = SpecCompression(transform, 0.33, 0.5, learnable)
    X = _complex((2, 3, 17, 5))
    Y = comp.forward_transform(X)
    torch.testing.assert_close(comp.backward_transform(Y), X, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(comp.forward_transform(comp.backward_transform(Y)), Y)


def test_compression_closed_forms():
    X = _complex((4, 9), seed=1)
    mag, ang = X.abs().double(), X.angle().double()
    cases = {
        "exponent": 0.15 * mag**0.5,
        "log": 0.15 * torch.log(1 + mag),
        "none": 0.15 * mag,
    }
    for transform, new_mag in cases.items():
        Y = SpecCompression(transform, 0.15, 0.5).forward_transform(X)
        torch.testing.assert_close(Y, torch.polar(new_mag, ang).to(Y.dtype), rtol=1e-5, atol=1e-6)


def test_learnable_parameters_get_finite_gradients():
    comp = SpecCompression("exponent", 0.33, 0.5, learnable=True)
    assert {n for n, _ in comp.named_parameters()} == {"factor", "alpha"}
    X = _complex((3, 8), seed=2)
    comp.backward_transform(comp.forward_transform(X) * 1.5).abs().sum().backward()
    assert torch.isfinite(comp.alpha.grad) and comp.alpha.grad != 0
    assert torch.isfinite(comp.factor.grad)
    assert {n for n, _ in SpecCompression("log", learnable=True).named_parameters()} == {"factor"}
    assert not list(SpecCompression("log").parameters())


def test_bad_transform_raises():
    with pytest.raises(ValueError, match="transform"):
        SpecCompression("sqrt")
    with pytest.raises(ValueError, match="> 0"):
        SpecCompression("exponent", spec_factor=0.0)


def test_stft_matches_direct_dft():
    """An interior frame equals sum_n w[n] x[m hop + n - N/2] exp(-2 pi i k n / N)."""
    n_fft, hop = 510, 128
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2000, generator=g, dtype=torch.float64)
    X = STFT(n_fft, hop).double().stft(x)
    assert X.shape == (256, 1 + 2000 // hop)
    m = 5
    n = np.arange(n_fft)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    seg = x.numpy()[m * hop - n_fft // 2 + n]
    k = np.arange(256)[:, None]
    ref = (w * seg * np.exp(-2j * np.pi * k * n / n_fft)).sum(-1)
    # the window buffer is built in float32, hence the tolerance
    np.testing.assert_allclose(X[:, m].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_sinusoid_peaks_at_its_bin():
    fs, f0 = 8000, 8000 * 40 / 510  # exactly on bin 40
    t = torch.arange(4000) / fs
    X = STFT().stft(torch.sin(2 * math.pi * f0 * t))
    assert int(X[:, 10].abs().argmax()) == 40


class _FirstK(torch.nn.Module):
    """A backbone that returns its first 2K channels: the wrapper must then give x back."""

    def __init__(self, num_channels_in, num_channels_out):
        super().__init__()
        self.c_in, self.c_out = num_channels_in, num_channels_out

    def forward(self, X, t):
        return X[:, : self.c_out]


@pytest.mark.parametrize("transform", ["exponent", "log", "none"])
@pytest.mark.parametrize("L", [1, 100, 1000, 1001, 8000])
def test_wrapper_analysis_synthesis_round_trip(L, transform):
    model = STFTScoreModel(_FirstK, n_sources=2, transform=transform)
    g = torch.Generator().manual_seed(L)
    x = torch.randn(3, 2, L, generator=g)
    mix = x.sum(1, keepdim=True)
    X, n_frames = model.analysis(torch.cat([x, mix], 1))
    assert X.shape[1:3] == (6, 256) and X.shape[-1] % 64 == 0
    assert n_frames == 1 + (L + model.pad_length(L)) // 128
    torch.testing.assert_close(model(x, torch.rand(3), mix), x, rtol=1e-4, atol=1e-4)


def test_istft_inverts_stft():
    s = STFT(510, 128)
    x = torch.randn(2, 3, 3000)
    torch.testing.assert_close(s.istft(s.stft(x), 3000), x, rtol=1e-4, atol=1e-5)

"""The Wiener post-filter (models/postfilter.py): the mixture split by the estimates'
spectrograms, checked on tones with known spectra, sums, permutations and silence."""

import math

import pytest
import torch

from metrics.separation import si_sdr
from models.blend import fit_to_mixture
from models.postfilter import WienerFilter, wiener_split

FS = 8000


def _tones(n=8000, freqs=(440.0, 1250.0)):
    t = torch.arange(n, dtype=torch.float64) / FS
    return torch.stack([torch.sin(2 * math.pi * f * t + i) for i, f in enumerate(freqs)])[None]


@pytest.mark.parametrize("leak", [0.3, 0.1])
def test_tones_leaked_into_each_other_are_split_back(leak):
    """Each estimate holds its tone and ``leak`` times the other's: in a tone's bins the
    masks are 1 and leak^2 over 1 + leak^2, so the leak falls from ``leak`` to ``leak^2``
    and the SI-SDR doubles in dB (the tones are 810 Hz apart, a hundred bins)."""
    s = _tones()  # (1, 2, L)
    mix = s.sum(1, keepdim=True)
    est = torch.stack([s[:, 0] + leak * s[:, 1], s[:, 1] + leak * s[:, 0]], 1)
    out = wiener_split(est, mix)
    inner = slice(1024, -1024)  # away from the edges, where the frames are cut
    before = si_sdr(est[..., inner], s[..., inner])
    after = si_sdr(out[..., inner], s[..., inner])
    expected = -20 * math.log10(leak)
    assert torch.allclose(before, torch.full_like(before, expected), atol=0.05)
    assert torch.allclose(after, torch.full_like(after, 2 * expected), atol=0.2)


@pytest.mark.parametrize("k,n", [(2, 8000), (3, 5000), (2, 300)])  # 300 < n_fft: zero padded
def test_the_split_sources_add_up_to_the_mixture(k, n):
    g = torch.Generator().manual_seed(k + n)
    mix = torch.randn(2, 1, n, generator=g, dtype=torch.float64)
    est = torch.randn(2, k, n, generator=g, dtype=torch.float64)
    out = wiener_split(est, mix)
    assert out.shape == est.shape
    assert torch.allclose(out.sum(1, keepdim=True), mix, atol=1e-9)


def test_permuted_estimates_give_the_same_sources_permuted_and_batches_are_independent():
    g = torch.Generator().manual_seed(4)
    mix = torch.randn(3, 1, 4000, generator=g)
    est = torch.randn(3, 3, 4000, generator=g)
    out = wiener_split(est, mix)
    order = [2, 0, 1]
    assert torch.allclose(wiener_split(est[:, order], mix), out[:, order], atol=1e-5)
    assert torch.allclose(wiener_split(est[1:2], mix[1:2]), out[1:2], atol=1e-5)


def test_power_sharpens_the_masks():
    """Two estimates with a 2:1 amplitude ratio in every bin: the first gets 2^p / (2^p + 1)
    of the mixture."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 1, 6000, generator=g, dtype=torch.float64)
    est = torch.cat([2 * x, x], 1)
    for p in (1.0, 2.0, 3.0):
        out = wiener_split(est, x, power=p)
        share = 2**p / (2**p + 1)
        assert torch.allclose(out[:, 0], share * x[:, 0], atol=1e-9)


def test_silent_estimates_split_the_mixture_equally_and_nothing_is_nan():
    mix = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(6))
    out = wiener_split(torch.zeros(1, 2, 4000), mix)
    assert torch.allclose(out, mix.expand(1, 2, 4000) / 2, atol=1e-6)
    silent = WienerFilter()(torch.zeros(1, 2, 4000), torch.zeros(1, 1, 4000))
    assert torch.isfinite(silent).all() and float(silent.abs().max()) == 0.0


def test_the_filter_mixes_the_split_with_the_fitted_estimate():
    s = _tones(6000)
    mix = s.sum(1, keepdim=True)
    est = 3.0 * torch.stack([s[:, 0] + 0.3 * s[:, 1], s[:, 1] + 0.3 * s[:, 0]], 1)
    fitted = fit_to_mixture(est, mix)
    split = wiener_split(fitted, mix)
    assert torch.allclose(WienerFilter(weight=0.0)(est, mix), fitted)
    assert torch.allclose(WienerFilter(weight=1.0)(est, mix), split)
    assert torch.allclose(WienerFilter(weight=0.7)(est, mix), 0.7 * split + 0.3 * fitted)


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_fft=1000 + 2), "multiple of 4"), (dict(n_fft=2.5), "multiple of 4"),
    (dict(power=0.0), "power must be positive"), (dict(weight=1.2), "weight must be in"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WienerFilter(**kwargs)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(B, 1, L\) are needed"):
        wiener_split(torch.zeros(1, 2, 100), torch.zeros(1, 1, 99))
    with pytest.raises(ValueError, match=r"\(B, 1, L\) are needed"):
        wiener_split(torch.zeros(1, 2, 100), torch.zeros(1, 2, 100))

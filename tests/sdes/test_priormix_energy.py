"""PriorMixSDE's local mixture level against a plain per-sample loop, edges included."""

import numpy as np
import pytest
import torch

import sdes
from tests.sdes.sde_oracles import sigma_mix_direct


@pytest.mark.parametrize("avg_len", [1, 2, 7, 8, 60, 510])
def test_sigma_mix_matches_direct_moving_average(avg_len):
    gen = torch.Generator().manual_seed(avg_len)
    L = 50
    mix = torch.randn(2, 1, L, generator=gen, dtype=torch.float64)
    mix[1, 0, 20:35] = 0.0  # silence: the 1e-4 energy floor applies inside
    mix[0, 0, :5] *= 10.0  # a loud edge
    sde = sdes.PriorMixSDE(2, 2.0, 0.05, 0.5, 30, avg_len=avg_len)
    got = sde.sigma_mix(mix)
    assert got.shape == (2, 1, L)
    for b in range(2):  # window sums come from running-sum differences: ~1e-11 relative
        np.testing.assert_allclose(got[b, 0].numpy(), sigma_mix_direct(mix[b, 0].numpy(), avg_len),
                                   rtol=1e-9)


def test_sigma_mix_default_window_and_known_values():
    sde = sdes.PriorMixSDE(2, 2.0, 0.05, 0.5, 30)
    assert sde.avg_len == 510
    # constant amplitude a: sigma = a / 2 everywhere, edges included
    mix = torch.full((1, 1, 2000), 0.3)
    torch.testing.assert_close(sde.sigma_mix(mix), torch.full((1, 1, 2000), 0.15))
    # silence: the floor 0.5 * sqrt(1e-4)
    silence = torch.zeros(1, 1, 700)
    torch.testing.assert_close(sde.sigma_mix(silence), torch.full_like(silence, 0.005))
    # one impulse of energy E in the middle: E / 510 inside its window, floor outside
    mix = torch.zeros(1, 1, 2000, dtype=torch.float64)
    mix[0, 0, 1000] = 10.0
    sigma = sde.sigma_mix(mix)[0, 0]
    inside = 0.5 * np.sqrt(100.0 / 510)
    # window of n covers n - 255 .. n + 254, so the impulse is seen from n = 746 to 1255
    np.testing.assert_allclose(sigma[746:1256].numpy(), inside, rtol=1e-12)
    np.testing.assert_allclose(sigma[[745, 1256]].numpy(), 0.005, rtol=1e-12)


def test_sigma_mix_rejects_bad_shape():
    sde = sdes.PriorMixSDE(2, 2.0, 0.05, 0.5, 30)
    with pytest.raises(ValueError, match="mix must have shape"):
        sde.sigma_mix(torch.zeros(2, 100))

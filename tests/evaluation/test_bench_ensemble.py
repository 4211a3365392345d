"""The estimate combination of bench/bench_pretrained.py --ensemble: scale fitted to the
mixture, order matched without the references, and the error of the mean of two
estimates with independent errors halved."""

import importlib.util
import sys

import pytest
import torch

from tests.training.fixtures import REPO


def _bench():
    sys.path.insert(0, str(REPO / "bench"))  # it imports its sibling bench module
    try:
        path = REPO / "bench" / "bench_pretrained.py"
        spec = importlib.util.spec_from_file_location("bench_pretrained", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return module


def _sources(b, k, n, seed):
    return torch.randn(b, k, n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", [2, 3])
def test_scaled_and_reordered_exact_sources_combine_to_the_sources(k):
    bench = _bench()
    s = _sources(2, k, 4000, seed=k)
    mix = s.sum(1, keepdim=True)
    gains = torch.tensor([0.2, 3.0, 7.0][:k])
    first = s[:, list(range(k))[::-1]] * gains[None, :, None]
    second = s[:, [(i + 1) % k for i in range(k)]] * gains.flip(0)[None, :, None] * 5
    out = bench.combine(first, second, mix)
    assert torch.allclose(out, s[:, list(range(k))[::-1]], atol=1e-5)  # first's order
    assert torch.allclose(bench.fit_to_mixture(second, mix).sum(1, keepdim=True), mix,
                          atol=1e-4)


def test_the_mean_of_two_independent_errors_has_half_the_error_energy():
    bench = _bench()
    s = _sources(8, 2, 16000, seed=10)
    mix = s.sum(1, keepdim=True)
    e1 = 0.1 * _sources(8, 2, 16000, seed=11)
    e2 = 0.1 * _sources(8, 2, 16000, seed=12)
    first, second = s + e1, (s + e2)[:, [1, 0]]
    out = bench.combine(first, second, mix, weight=0.5)
    err = lambda est: float((bench.fit_to_mixture(est, mix) - s).pow(2).mean())  # noqa: E731
    ratio = float((out - s).pow(2).mean()) / err(first)
    assert 0.45 < ratio < 0.55
    assert torch.allclose(bench.combine(first, second, mix, weight=1.0),
                          bench.fit_to_mixture(first, mix))

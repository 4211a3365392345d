"""Tests of chunked separation with order re-matching (evaluation/overlap_add.py)."""

import itertools

import numpy as np
import pytest
import torch

from evaluation.overlap_add import (
    OverlapAdd,
    align_channels,
    make_window,
    match_order,
    overlap_add,
    rescale_to_mixture,
)


def fractions(*scales):
    """A separator returning fixed fractions of the mixture, one per source."""
    return lambda x: torch.cat([s * x for s in scales], dim=1)


class ShuffledOracle:
    """Returns the true sources of each segment in a random order (per excerpt).

    The segment's position is found from its first sample: the mixture is white noise,
    so its float values are (almost surely) distinct.
    """

    def __init__(self, sources: torch.Tensor, seed: int = 0):
        self.sources = sources  # (C, K, L)
        self.mix = sources.sum(1)  # (C, L)
        self.rng = np.random.default_rng(seed)
        self.swapped = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        C, K, L = self.sources.shape
        out = torch.zeros(x.shape[0], K, x.shape[-1])
        for i, seg in enumerate(x[:, 0]):
            c = i % C  # excerpts are (segment, channel) in row-major order
            start = int(torch.nonzero(self.mix[c] == seg[0])[0, 0])
            n = min(x.shape[-1], L - start)
            assert torch.equal(self.mix[c, start : start + n], seg[:n])
            perm = self.rng.permutation(K)
            self.swapped += int(np.any(perm != np.arange(K)))
            out[i, :, :n] = self.sources[c, perm, start : start + n]
        return out


CASES = [
    # (length, segment, overlap, batch size)
    (1, 100, 0.25, 1),
    (37, 100, 0.5, 2),  # shorter than a segment
    (100, 100, 0.25, 1),  # exactly one segment
    (101, 100, 0.25, 3),
    (1000, 100, 0.25, 1),
    (1237, 100, 0.5, 4),  # not a multiple of the hop
    (1237, 64, 0.75, 2),  # three segments overlap every sample
    (5000, 333, 0.1, 5),
]


@pytest.mark.parametrize("length,segment,overlap,batch", CASES)
def test_fixed_fractions_are_recovered_exactly(length, segment, overlap, batch):
    x = torch.randn(2, length)
    y = overlap_add(
        fractions(0.25, 0.75), x, 2, segment, overlap, batch, rematch=False, rescale=False
    )
    assert y.shape == (2, 2, length)
    torch.testing.assert_close(y, torch.stack([0.25 * x, 0.75 * x], dim=1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("length,segment,overlap,batch", CASES)
def test_identity_with_rematch_gives_back_the_input(length, segment, overlap, batch):
    x = torch.randn(2, length)
    y = overlap_add(fractions(0.0, 1.0, 0.0), x, 3, segment, overlap, batch, rematch=True)
    torch.testing.assert_close(y[:, 1], x, atol=1e-6, rtol=1e-5)
    assert y[:, [0, 2]].abs().max() == 0


def test_zero_overlap_without_rematch():
    x = torch.randn(1, 1000)
    y = overlap_add(fractions(1.0, 0.0), x, 2, 128, 0.0, 2, rematch=False)
    torch.testing.assert_close(y[:, 0], x)


def test_rescale_makes_the_estimates_sum_to_the_mixture():
    x = torch.randn(1, 900)
    y = overlap_add(fractions(0.1, 0.4), x, 2, 200, 0.25, 2, rematch=False, rescale=True)
    torch.testing.assert_close(y, torch.stack([0.2 * x, 0.8 * x], dim=1), atol=1e-6, rtol=1e-5)


def test_rescale_to_mixture_is_least_squares():
    rng = np.random.default_rng(0)
    est = rng.standard_normal((2, 3, 500))
    mix = rng.standard_normal((2, 500))
    out = rescale_to_mixture(est, mix)
    gain = out[:, 0, 0] / est[:, 0, 0]
    np.testing.assert_allclose(out, est * gain[:, None, None])
    # The residual of a least-squares fit is orthogonal to the fitted direction.
    resid = mix - out.sum(1)
    np.testing.assert_allclose((resid * est.sum(1)).sum(-1), 0, atol=1e-9)
    zero = np.zeros((1, 2, 10))
    assert np.array_equal(rescale_to_mixture(zero, np.ones((1, 10))), zero)


@pytest.mark.parametrize("K,C", [(2, 1), (3, 2), (4, 1)])
def test_rematch_fixes_shuffled_segments(K, C):
    torch.manual_seed(K)
    sources = torch.randn(1, K, 3000)
    # Further channels: the same sources panned, plus some uncorrelated noise.
    pans = [torch.rand(K, 1) + 0.2 for _ in range(C - 1)]
    sources = torch.cat([sources] + [g * sources + 0.3 * torch.randn_like(sources) for g in pans])
    oracle = ShuffledOracle(sources, seed=K)
    y = overlap_add(oracle, sources.sum(1), K, 400, 0.25, 3, rematch=True)
    assert oracle.swapped >= 3  # the test is only meaningful if segments were shuffled
    # The global order is that of the first segment's first channel: resolve it once.
    perm = match_order(sources[:1, :, :400], y[:1, :, :400])
    torch.testing.assert_close(y[:, torch.as_tensor(perm)], sources, atol=1e-5, rtol=1e-5)


def test_without_rematch_shuffled_segments_stay_wrong():
    torch.manual_seed(0)
    sources = torch.randn(1, 2, 3000)
    y = overlap_add(ShuffledOracle(sources), sources.sum(1), 2, 400, 0.25, 3, rematch=False)
    errors = [(y[:, list(p)] - sources).abs().max() for p in itertools.permutations(range(2))]
    assert min(errors) > 0.5


def test_match_order_any_k():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, 6, 200))
    for _ in range(5):
        perm = rng.permutation(6)
        est = -0.5 * ref[:, perm] + 0.1 * rng.standard_normal((2, 6, 200))  # polarity ignored
        p = match_order(ref, est)
        assert np.array_equal(perm[p], np.arange(6))


def test_align_channels_follows_channel_zero():
    src = np.random.default_rng(2).standard_normal((3, 200))
    est = np.stack([src, src[[2, 0, 1]] * 0.9, src[[1, 2, 0]]])  # (C=3, K=3, n)
    aligned = align_channels(est)
    np.testing.assert_allclose(aligned[1], 0.9 * src)
    np.testing.assert_allclose(aligned[2], src)


def test_streaming_in_blocks_equals_one_shot():
    torch.manual_seed(3)
    sources = torch.randn(2, 3, 4321)
    mix = sources.sum(1)
    whole = overlap_add(ShuffledOracle(sources, seed=5), mix, 3, 300, 0.3, 2)
    ola = OverlapAdd(ShuffledOracle(sources, seed=5), 3, 300, 0.3, batch_size=2)
    pieces, pos = [], 0
    for n in [0, 1, 7, 299, 300, 1000, 5000]:
        pieces.append(ola.push(mix[:, pos : pos + n]))
        pos += n
    pieces.append(ola.flush())
    assert all(p.shape[:2] == (2, 3) for p in pieces)
    torch.testing.assert_close(torch.from_numpy(np.concatenate(pieces, -1)), whole)


def test_output_is_emitted_progressively():
    ola = OverlapAdd(fractions(1.0, 0.0), 2, 100, 0.25, batch_size=1)
    out = ola.push(torch.randn(1, 1000))
    assert out.shape[-1] >= 1000 - 100  # only the last, still open, segment is held back
    assert ola.push(torch.zeros(1, 0)).shape == (1, 2, 0)


def test_window_is_positive_and_ramps_sum_to_one():
    w = make_window(100, 25)
    assert (w > 0).all() and w.max() == 1
    np.testing.assert_allclose(w[75:] + w[:25], np.ones(25), rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="overlap > 0"):
        OverlapAdd(fractions(1.0), 1, 100, 0.0, rematch=True)
    with pytest.raises(ValueError, match="overlap"):
        OverlapAdd(fractions(1.0), 1, 100, 1.0)
    with pytest.raises(ValueError, match="separator returned"):
        overlap_add(fractions(1.0), torch.randn(1, 500), 2, 100)
    ola = OverlapAdd(fractions(1.0), 1, 100)
    ola.flush()
    with pytest.raises(RuntimeError):
        ola.push(torch.zeros(1, 10))

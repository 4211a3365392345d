"""Chunked separation of long signals: overlapping segments, order re-matching, overlap-add.

A separator maps a batch of mixture segments ``(S, 1, n)`` to estimates ``(S, K, n)``.
Long signals are cut into segments of ``segment`` samples with hop ``segment - overlap``,
separated in batches, and blended with a window whose summed weights are divided out.
Because a separation network may return the sources in any order, the order of each
segment is re-matched to its predecessor on their overlapping part (Hungarian
assignment on the absolute cosine similarity, any K). Channels are separated independently;
each channel's order is first aligned to channel 0 of the same segment so that the
stems can be re-assembled. :class:`OverlapAdd` works on a stream in bounded memory.
"""

from collections.abc import Callable

import numpy as np
import torch

from metrics.separation import best_permutation

SeparateFn = Callable[[torch.Tensor], torch.Tensor]


def make_window(n: int, ramp: int) -> np.ndarray:
    """Trapezoid window of length ``n`` with linear ramps of ``ramp`` samples.

    The weights are strictly positive, so a sample covered by a single segment (the
    signal edges) is recovered exactly once the weights are divided out, and two ramps
    that overlap by ``ramp`` samples add up to one.
    """
    i = np.arange(n, dtype=np.float64)
    w = np.minimum(np.minimum((i + 1) / (ramp + 1), (n - i) / (ramp + 1)), 1.0)
    return w.astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise ``|cosine similarity|`` ``(K, K)`` of ``a, b: (C, K, n)``, summed over channels.

    The absolute value makes the match blind to polarity: an estimate that is the
    negative of the reference (e.g. an out-of-phase stereo channel) is the same source.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-12)
    b = b / (np.linalg.norm(b, axis=-1, keepdims=True) + 1e-12)
    return np.abs(np.einsum("cin,cjn->cij", a, b)).sum(0)


def match_order(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Permutation ``p`` such that ``est[:, p]`` best matches ``ref`` (both ``(C, K, n)``):
    the project's one assignment helper (:func:`metrics.separation.best_permutation`) on
    the :func:`similarity` of the two."""
    return best_permutation(similarity(ref, est)[None])[0].numpy()


def align_channels(est: np.ndarray) -> np.ndarray:
    """Reorder the sources of every channel of ``est (C, K, n)`` to match channel 0."""
    est = np.asarray(est)
    out = est.copy()
    for c in range(1, est.shape[0]):
        out[c] = est[c, match_order(est[:1], est[c : c + 1])]
    return out


def rescale_to_mixture(est: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Scale ``est (C, K, n)`` per channel so that its sum best matches ``mix (C, n)``.

    Least-squares gain ``<sum_k est, mix> / ||sum_k est||^2``; an all-zero estimate is
    left as is.
    """
    est = np.asarray(est)
    total = est.sum(axis=1, dtype=np.float64)
    energy = (total * total).sum(-1)
    dot = (total * np.asarray(mix, dtype=np.float64)).sum(-1)
    gain = np.where(energy > 0, dot / np.maximum(energy, 1e-30), 1.0)
    return est * gain.astype(est.dtype)[:, None, None]


class OverlapAdd:
    """Streaming chunked separation with order re-matching and overlap-add.

    Feed the mixture with :meth:`push` (``(C, n)`` blocks of any size) and finish with
    :meth:`flush`; both return the newly finished part of the output as a float32
    ``np.ndarray (C, K, m)``. Memory is bounded by about ``batch_size`` segments,
    whatever the signal length. The bookkeeping is numpy (single-threaded): torch's
    intra-op threads only add overhead on these small element-wise operations.

    Args:
        separate_fn: maps a torch tensor ``(S, 1, n)`` to ``(S, K, n)``.
        n_sources: K.
        segment: segment length in samples.
        overlap: fraction of a segment shared with the next one, in ``[0, 1)``.
        batch_size: number of time segments (each with all channels) per call.
        rematch: re-match the source order between neighbouring segments and channels.
        rescale: least-squares scale each segment's estimates to the mixture.
        on_segments: called with the number of segments done after each call.
    """

    def __init__(
        self,
        separate_fn: SeparateFn,
        n_sources: int,
        segment: int,
        overlap: float = 0.25,
        batch_size: int = 1,
        rematch: bool = True,
        rescale: bool = True,
        on_segments: Callable[[int], None] | None = None,
    ):
        if segment < 1:
            raise ValueError(f"segment must be at least one sample, got {segment}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
        self.fn = separate_fn
        self.K = n_sources
        self.segment = segment
        self.ramp = min(int(round(segment * overlap)), segment - 1)
        self.hop = segment - self.ramp
        if rematch and self.ramp == 0:
            raise ValueError("re-matching the source order needs overlap > 0")
        self.batch_size = max(1, batch_size)
        self.rematch = rematch
        self.rescale = rescale
        self.on_segments = on_segments
        self.window = make_window(segment, self.ramp)
        self._buf: np.ndarray | None = None  # unprocessed input, starts at _buf_start
        self._buf_start = 0
        self._next = 0  # start of the next segment
        self._covered = 0  # end of the last processed segment
        self._acc: np.ndarray | None = None  # weighted sum, (C, K, segment) at _acc_start
        self._wsum = np.zeros(segment, np.float32)
        self._acc_start = 0
        self._total: int | None = None  # known once flush() is called
        self._tail: np.ndarray | None = None  # previous estimates on the next overlap
        self._done = False

    def _empty(self) -> np.ndarray:
        C = 0 if self._buf is None else self._buf.shape[0]
        return np.zeros((C, self.K, 0), np.float32)

    def push(self, x) -> np.ndarray:
        """Append ``x (C, n)`` (array or tensor) and return the output that became final."""
        if self._done:
            raise RuntimeError("push() after flush()")
        x = np.asarray(x, dtype=np.float32)
        if self._buf is None:
            self._buf = x.copy()
            self._acc = np.zeros((x.shape[0], self.K, self.segment), np.float32)
        else:
            self._buf = np.concatenate([self._buf, x], axis=-1)
        outs = [self._empty()]
        end = self._buf_start + self._buf.shape[-1]
        while self._next + (self.batch_size - 1) * self.hop + self.segment <= end:
            starts = [self._next + i * self.hop for i in range(self.batch_size)]
            outs.append(self._process(starts, self.segment))
        return np.concatenate(outs, axis=-1)

    def flush(self) -> np.ndarray:
        """Process what is left and return the rest of the output."""
        if self._done:
            raise RuntimeError("flush() called twice")
        self._done = True
        if self._buf is None:
            return np.zeros((0, self.K, 0), np.float32)
        total = self._buf_start + self._buf.shape[-1]
        self._total = total
        outs = [self._empty()]
        if self._covered == 0 and 0 < total < self.segment:
            # A signal shorter than one segment is separated at its own length.
            outs.append(self._process([0], total))
        starts = []
        while self._covered < total:
            starts.append(self._next)
            self._covered = self._next + self.segment
            self._next += self.hop
        for i in range(0, len(starts), self.batch_size):
            outs.append(self._process(starts[i : i + self.batch_size], self.segment))
        n = total - self._acc_start
        if n > 0:
            outs.append(self._acc[..., :n] / self._wsum[:n])
        return np.concatenate(outs, axis=-1)

    def _process(self, starts: list[int], length: int) -> np.ndarray:
        """Separate the segments at ``starts`` (in order), add them, return final output."""
        C = self._buf.shape[0]
        mix = np.zeros((len(starts), C, length), np.float32)  # zero-padded past the end
        for j, s in enumerate(starts):
            seg = self._buf[:, s - self._buf_start : s - self._buf_start + length]
            mix[j, :, : seg.shape[-1]] = seg
        est = self.fn(torch.from_numpy(mix).reshape(-1, 1, length))
        if tuple(est.shape) != (len(starts) * C, self.K, length):
            raise ValueError(
                f"separator returned {tuple(est.shape)}, "
                f"expected {(len(starts) * C, self.K, length)}"
            )
        est = est.detach().to("cpu", torch.float32).numpy().reshape(len(starts), C, self.K, -1)
        window = self.window if length == self.segment else make_window(length, self.ramp)
        outs = []
        for j, s in enumerate(starts):
            e = est[j]
            if self.rescale:
                e = rescale_to_mixture(e, mix[j])
            if self.rematch:
                e = align_channels(e)
                if self._tail is not None:
                    e = e[:, match_order(self._tail, e[..., : self._tail.shape[-1]])]
                self._tail = e[..., self.hop :].copy()
            self._acc[..., :length] += e * window
            self._wsum[:length] += window
            self._covered = max(self._covered, s + length)
            self._next = s + self.hop
            outs.append(self._emit_until(min(self._next, s + length)))
        # Input before the next segment will not be read again.
        drop = min(self._next, self._buf_start + self._buf.shape[-1]) - self._buf_start
        self._buf = self._buf[:, drop:].copy()  # copy: let the dropped part be freed
        self._buf_start += drop
        if self.on_segments is not None:
            self.on_segments(len(starts))
        return np.concatenate(outs, axis=-1)

    def _emit_until(self, pos: int) -> np.ndarray:
        """Return the normalised output before ``pos`` and shift the accumulator."""
        if self._total is not None:
            pos = min(pos, self._total)  # zero padding past the end is never output
        n = pos - self._acc_start
        if n <= 0:
            return self._empty()
        out = self._acc[..., :n] / self._wsum[:n]
        self._acc[..., :-n] = self._acc[..., n:].copy()
        self._acc[..., -n:] = 0
        self._wsum[:-n] = self._wsum[n:].copy()
        self._wsum[-n:] = 0
        self._acc_start = pos
        return out


def overlap_add(
    separate_fn: SeparateFn,
    mix: torch.Tensor,
    n_sources: int,
    segment: int,
    overlap: float = 0.25,
    batch_size: int = 1,
    rematch: bool = True,
    rescale: bool = True,
) -> torch.Tensor:
    """Separate a whole signal ``mix`` (``(L,)`` or ``(C, L)``) into ``(C, K, L)``."""
    mix = torch.as_tensor(mix, dtype=torch.float32)
    if mix.dim() == 1:
        mix = mix[None]
    ola = OverlapAdd(separate_fn, n_sources, segment, overlap, batch_size, rematch, rescale)
    return torch.from_numpy(np.concatenate([ola.push(mix.numpy()), ola.flush()], axis=-1))

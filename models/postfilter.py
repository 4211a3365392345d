"""A Wiener post-filter: the mixture split again by the estimates' own spectrograms.

Given estimates ``s_1 .. s_K`` of the sources of a mixture ``y``, the filter takes the
short-time spectra ``S_k`` and ``Y`` and gives source k the share
``|S_k|^p / sum_j |S_j|^p`` of every time-frequency bin of ``Y`` (for p = 2 the Wiener
filter with the estimates' periodograms as the sources' power spectra). The filtered
sources add up to the mixture exactly, and what an estimate put in a bin that the
others own much more strongly goes back to them. A separator's estimate carries errors
that such a re-split removes (leaked partials of the other voice, a noise floor), and
the re-split carries its own (no phase of its own: the mixture's in every bin), so the
mean of the two, ``weight * filtered + (1 - weight) * estimate``, is better than either
on the shipped speech model (``docs/model-card-speech-2spk-8k.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.blend import fit_to_mixture


def wiener_split(est: Tensor, mix: Tensor, n_fft: int = 1024, power: float = 2.0) -> Tensor:
    """The mixture ``mix (B, 1, L)`` split between the sources of ``est (B, K, L)`` by
    the masks ``|S_k|^power / sum_j |S_j|^power`` (Hann window of ``n_fft`` samples, hop
    ``n_fft // 4``). Bins where every estimate is zero are split equally. The sources
    returned sum to ``mix`` (up to rounding)."""
    if est.ndim != 3 or mix.ndim != 3 or mix.shape[1] != 1 or (
            est.shape[0], est.shape[2]) != (mix.shape[0], mix.shape[2]):  # fmt: skip
        raise ValueError(f"estimates (B, K, L) and a mixture (B, 1, L) are needed, got "
                         f"{tuple(est.shape)} and {tuple(mix.shape)}")
    b, k, n = est.shape
    window = torch.hann_window(n_fft, device=est.device, dtype=est.dtype)

    def stft(x: Tensor) -> Tensor:  # zero padding: any length works, even under n_fft
        return torch.stft(x.reshape(-1, n), n_fft, n_fft // 4, window=window,
                          pad_mode="constant", return_complex=True)

    spec_est, spec_mix = stft(est), stft(mix)
    p = spec_est.abs().pow(power).reshape(b, k, *spec_est.shape[1:])
    total = p.sum(1, keepdim=True)
    mask = torch.where(total > 0, p / total.clamp_min(torch.finfo(p.dtype).tiny), 1.0 / k)
    split = mask * spec_mix.reshape(b, 1, *spec_mix.shape[1:])
    out = torch.istft(split.reshape(b * k, *split.shape[2:]), n_fft, n_fft // 4,
                      window=window, length=n)
    return out.reshape(b, k, n)


@dataclass(frozen=True)
class WienerFilter:
    """``weight * wiener_split(est, mix) + (1 - weight) * est``, ``est`` first fitted to
    the mixture (:func:`models.blend.fit_to_mixture`: the masks compare the sources'
    levels, which a scale-invariant separator does not fix)."""

    n_fft: int = 1024
    power: float = 2.0
    weight: float = 0.7

    def __post_init__(self):
        if not (isinstance(self.n_fft, int) and self.n_fft >= 4 and self.n_fft % 4 == 0):
            raise ValueError(f"n_fft must be a multiple of 4 (the hop is a quarter), "
                             f"got {self.n_fft!r}")
        if not self.power > 0:
            raise ValueError(f"power must be positive, got {self.power!r}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {self.weight!r}")

    def __call__(self, est: Tensor, mix: Tensor) -> Tensor:
        est = fit_to_mixture(est, mix)
        if self.weight == 0.0:
            return est
        split = wiener_split(est, mix, self.n_fft, self.power)
        return self.weight * split + (1.0 - self.weight) * est

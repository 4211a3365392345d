"""STFT helpers and the magnitude compression used around the STFT-domain score network."""

import math

import torch
from torch import nn

TRANSFORMS = ("exponent", "log", "none")


def _apply_magnitude(X: torch.Tensor, fn) -> torch.Tensor:
    """Map |X| -> fn(|X|) keeping the phase; the phase of 0 is taken as 0 (angle convention)."""
    mag = X.abs()
    nonzero = mag > 0
    # X / |X| is exp(i angle X) without atan2; guarded so gradients stay finite at 0
    unit = torch.where(nonzero, X / torch.where(nonzero, mag, 1.0), 1.0)
    return fn(mag, nonzero) * unit


def _safe_pow(mag: torch.Tensor, nonzero: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    # 0 ** p with a learnable p has a NaN gradient (log 0); substitute 1 where mag == 0
    return torch.where(nonzero, torch.where(nonzero, mag, 1.0) ** p, 0.0)


class SpecCompression(nn.Module):
    """Magnitude compression of a complex spectrogram and its exact inverse.

    exponent: c |X|^alpha exp(i angle X);  log: c log(1 + |X|) exp(i angle X);  none: c X.
    With `learnable`, alpha (exponent only) and c are trainable parameters.
    """

    def __init__(
        self,
        transform: str = "exponent",
        spec_factor: float = 0.33,
        spec_abs_exponent: float = 0.5,
        learnable: bool = False,
    ):
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(
                f"spectrogram transform must be one of {TRANSFORMS}, got {transform!r}"
            )
        if spec_factor <= 0 or spec_abs_exponent <= 0:
            raise ValueError(
                f"spec_factor ({spec_factor}) and spec_abs_exponent ({spec_abs_exponent}) "
                "must be > 0"
            )
        self.transform = transform
        factor = torch.tensor(float(spec_factor))
        alpha = torch.tensor(float(spec_abs_exponent))
        if learnable:
            self.factor = nn.Parameter(factor)
            if transform == "exponent":
                self.alpha = nn.Parameter(alpha)
            else:
                self.register_buffer("alpha", alpha)
        else:
            self.register_buffer("factor", factor)
            self.register_buffer("alpha", alpha)

    def forward_transform(self, X: torch.Tensor) -> torch.Tensor:
        c = self.factor
        if self.transform == "exponent":
            return _apply_magnitude(X, lambda m, nz: c * _safe_pow(m, nz, self.alpha))
        if self.transform == "log":
            return _apply_magnitude(X, lambda m, nz: c * torch.log1p(m))
        return c * X

    def backward_transform(self, Y: torch.Tensor) -> torch.Tensor:
        c = self.factor
        if self.transform == "exponent":
            return _apply_magnitude(Y, lambda m, nz: _safe_pow(m / c, nz, 1.0 / self.alpha))
        if self.transform == "log":
            return _apply_magnitude(Y, lambda m, nz: torch.expm1(m / c))
        return Y / c

    def extra_repr(self) -> str:
        return f"transform={self.transform}"


class STFT(nn.Module):
    """Centred STFT with a periodic Hann window, and the inverse with an explicit length."""

    def __init__(self, n_fft: int = 510, hop_length: int = 128):
        super().__init__()
        if n_fft < 2 or hop_length < 1 or hop_length > n_fft:
            raise ValueError(f"need 1 <= hop_length <= n_fft, got n_fft={n_fft}, hop={hop_length}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """(..., L) real -> (..., F, T) complex."""
        lead = x.shape[:-1]
        X = torch.stft(
            x.reshape(-1, x.shape[-1]), self.n_fft, self.hop_length, window=self.window,
            center=True, pad_mode="reflect", return_complex=True,
        )
        return X.reshape(*lead, *X.shape[-2:])

    def istft(self, X: torch.Tensor, length: int) -> torch.Tensor:
        """(..., F, T) complex -> (..., length) real."""
        lead = X.shape[:-2]
        x = torch.istft(
            X.reshape(-1, *X.shape[-2:]), self.n_fft, self.hop_length, window=self.window,
            center=True, length=length,
        )
        return x.reshape(*lead, length)


def frames_to_multiple(n_frames: int, multiple: int) -> int:
    return int(math.ceil(n_frames / multiple) * multiple)

"""Score models on waveforms: the STFT-domain wrapper around NCSN++ and the waveform wrapper.

Both take `x (B, K, L)`, `t (B,)`, `mix (B, 1, L)` and return a score `(B, K, L)`.
The backbone may be a ready module or a factory (a Hydra `_partial_: true` node):
the wrapper then calls it with the channel counts that follow from `n_sources`,
so K = 2, 3, 4 only needs `n_speakers` changed in the config.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.spec import STFT, SpecCompression, frames_to_multiple


def _check_inputs(x: torch.Tensor, t: torch.Tensor, mix: torch.Tensor, n_sources: int) -> None:
    if x.ndim != 3 or x.shape[1] != n_sources:
        raise ValueError(f"x must have shape (B, {n_sources}, L), got {tuple(x.shape)}")
    B, _, L = x.shape
    if mix.shape != (B, 1, L):
        raise ValueError(f"mix must have shape ({B}, 1, {L}) to match x, got {tuple(mix.shape)}")
    if t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")


class STFTScoreModel(nn.Module):
    """x_t and the mixture -> compressed STFT (2(K+1) real channels) -> backbone -> 2K
    channels -> inverse compression -> iSTFT -> score waveforms (B, K, L)."""

    def __init__(
        self,
        backbone: nn.Module | Callable[..., nn.Module],
        n_sources: int,
        n_fft: int = 510,
        hop_length: int = 128,
        transform: str = "exponent",
        spec_factor: float = 0.33,
        spec_abs_exponent: float = 0.5,
        learnable_transform: bool = False,
        frame_multiple: int = 64,
    ):
        super().__init__()
        if n_sources < 1:
            raise ValueError(f"n_sources must be >= 1, got {n_sources}")
        if frame_multiple < 1:
            raise ValueError(f"frame_multiple must be >= 1, got {frame_multiple}")
        self.n_sources = n_sources
        self.frame_multiple = frame_multiple
        c_in, c_out = 2 * (n_sources + 1), 2 * n_sources
        if not isinstance(backbone, nn.Module):
            backbone = backbone(num_channels_in=c_in, num_channels_out=c_out)
        for name, want in (("c_in", c_in), ("c_out", c_out)):
            have = getattr(backbone, name, want)
            if have != want:
                raise ValueError(
                    f"backbone has {name}={have} but {n_sources} sources need {want}: pass the "
                    "backbone as a partial (Hydra `_partial_: true`) so the wrapper sets it"
                )
        self.backbone = backbone
        self.stft_module = STFT(n_fft, hop_length)
        self.compression = SpecCompression(
            transform, spec_factor, spec_abs_exponent, learnable_transform
        )

    # helpers kept public for tests and plotting
    def stft(self, x: torch.Tensor) -> torch.Tensor:
        return self.stft_module.stft(x)

    def istft(self, X: torch.Tensor, length: int) -> torch.Tensor:
        return self.stft_module.istft(X, length)

    def forward_transform(self, X: torch.Tensor) -> torch.Tensor:
        return self.compression.forward_transform(X)

    def backward_transform(self, Y: torch.Tensor) -> torch.Tensor:
        return self.compression.backward_transform(Y)

    def pad_length(self, n_samples: int) -> int:
        """Right padding of the waveform before the STFT (n_fft - hop, more if too short
        for the centred reflect padding)."""
        n_fft, hop = self.stft_module.n_fft, self.stft_module.hop_length
        pad = n_fft - hop
        return max(pad, n_fft // 2 + 1 - n_samples)

    def analysis(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(B, C, L) -> (B, 2C, F, T_pad) compressed real/imag channels and the frame count."""
        B, C, L = x.shape
        x = F.pad(x, (0, self.pad_length(L)))
        X = self.forward_transform(self.stft(x))
        n_frames = X.shape[-1]
        X = torch.view_as_real(X).permute(0, 1, 4, 2, 3).reshape(B, 2 * C, *X.shape[-2:])
        X = F.pad(X, (0, frames_to_multiple(n_frames, self.frame_multiple) - n_frames))
        return X, n_frames

    def synthesis(self, Y: torch.Tensor, n_frames: int, length: int) -> torch.Tensor:
        """(B, 2K, F, T_pad) real channels -> (B, K, length) waveforms (inverse of analysis)."""
        B, C2, Fq, _ = Y.shape
        Y = Y[..., :n_frames].reshape(B, C2 // 2, 2, Fq, n_frames).permute(0, 1, 3, 4, 2)
        Y = self.backward_transform(torch.view_as_complex(Y.contiguous()))
        return self.istft(Y, length + self.pad_length(length))[..., :length]

    def forward(self, x: torch.Tensor, t: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        _check_inputs(x, t, mix, self.n_sources)
        L = x.shape[-1]
        X, n_frames = self.analysis(torch.cat([x, mix], dim=1))
        Y = self.backbone(X, t)
        return self.synthesis(Y, n_frames, L)


class WaveformScoreModel(nn.Module):
    """Waveform-domain score model: the backbone sees (x, t, mix) directly (CDiffuse)."""

    def __init__(self, backbone: nn.Module | Callable[..., nn.Module], n_sources: int):
        super().__init__()
        if n_sources < 1:
            raise ValueError(f"n_sources must be >= 1, got {n_sources}")
        if not isinstance(backbone, nn.Module):
            backbone = backbone(n_sources=n_sources)
        have = getattr(backbone, "n_sources", n_sources)
        if have != n_sources:
            raise ValueError(
                f"backbone has n_sources={have}, wrapper {n_sources}: pass it as a partial"
            )
        self.n_sources = n_sources
        self.backbone = backbone

    def forward(self, x: torch.Tensor, t: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        _check_inputs(x, t, mix, self.n_sources)
        return self.backbone(x, t, mix)

"""Score models on waveforms: the STFT-domain wrapper around NCSN++ and the waveform wrapper.

Both take `x (B, K, L)`, `t (B,)`, `mix (B, 1, L)` and return a score `(B, K, L)`.
The backbone may be a ready module or a factory (a Hydra `_partial_: true` node):
the wrapper then calls it with the channel counts that follow from `n_sources`,
so K = 2, 3, 4 only needs `n_sources` changed in the config.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from networks.spec import STFT, SpecCompression, frames_to_multiple


def _check_inputs(x: torch.Tensor, t: torch.Tensor, mix: torch.Tensor, n_sources: int) -> None:
    if x.ndim != 3 or x.shape[1] != n_sources:
        raise ValueError(f"x must have shape (B, {n_sources}, L), got {tuple(x.shape)}")
    B, _, L = x.shape
    if mix.shape != (B, 1, L):
        raise ValueError(f"mix must have shape ({B}, 1, {L}) to match x, got {tuple(mix.shape)}")
    if t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")


OUTPUTS = ("spectrum", "mask", "mask+spectrum")
LOG_MAG_FLOOR = 1e-6  # of |X|^2, for a unit-variance mixture (about -60 dB per bin)


class STFTScoreModel(nn.Module):
    """x_t and the mixture -> compressed STFT (2(K+1) real channels) -> backbone -> 2K
    channels -> inverse compression -> iSTFT -> score waveforms (B, K, L).

    ``output`` says what the backbone's output channels are:

    - ``spectrum`` (NCSN++ in DiffSep): the compressed STFT of each output, inverted
      with the compression;
    - ``mask``: a complex mask per source on the mixture's (uncompressed) STFT, so
      output k is ``iSTFT(M_k * STFT(mix))``: the output has the mixture's
      time-frequency support by construction, which is what a separator predicts
      (an estimate of the sources, or a correction of one);
    - ``mask+spectrum``: 4K channels, the sum of both (the spectrum part can reach
      bins where the mixture is silent, e.g. to remove noise from ``x_t``).

    With ``log_magnitude`` the backbone also gets ``log(|X|^2 + 1e-6) / 10`` of each
    input (K + 1 more channels, after the real/imaginary ones): the energy of a bin
    without having to square and add two phase-dependent numbers.
    """

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
        output: str = "spectrum",
        log_magnitude: bool = False,
    ):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if n_sources < 1:
            raise ValueError(f"n_sources must be >= 1, got {n_sources}")
        if frame_multiple < 1:
            raise ValueError(f"frame_multiple must be >= 1, got {frame_multiple}")
        self.n_sources = n_sources
        self.frame_multiple = frame_multiple
        self.output = output
        self.log_magnitude = bool(log_magnitude)
        c_in = (3 if self.log_magnitude else 2) * (n_sources + 1)
        c_out = 2 * n_sources * (2 if output == "mask+spectrum" else 1)
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

    def analysis(self, x: torch.Tensor, raw: bool = False):
        """(B, C, L) -> (B, 2C, F, T_pad) compressed real/imag channels (3C with
        ``log_magnitude``) and the frame count (and, with ``raw``, the uncompressed STFT
        (B, C, F, T) as a third value)."""
        B, C, L = x.shape
        x = F.pad(x, (0, self.pad_length(L)))
        S = self.stft(x)
        X = self.forward_transform(S)
        n_frames = X.shape[-1]
        X = torch.view_as_real(X).permute(0, 1, 4, 2, 3).reshape(B, 2 * C, *X.shape[-2:])
        if self.log_magnitude:
            X = torch.cat([X, torch.log(S.real**2 + S.imag**2 + LOG_MAG_FLOOR) / 10], dim=1)
        X = F.pad(X, (0, frames_to_multiple(n_frames, self.frame_multiple) - n_frames))
        return (X, n_frames, S) if raw else (X, n_frames)

    @staticmethod
    def _complex(Y: torch.Tensor, n_frames: int) -> torch.Tensor:
        """(B, 2K, F, T_pad) real channels -> (B, K, F, n_frames) complex."""
        B, C2, Fq, _ = Y.shape
        Y = Y[..., :n_frames].reshape(B, C2 // 2, 2, Fq, n_frames).permute(0, 1, 3, 4, 2)
        return torch.view_as_complex(Y.contiguous())

    def synthesis(self, Y: torch.Tensor, n_frames: int, length: int, mix_stft=None):
        """(B, 2K, F, T_pad) real channels -> (B, K, length) waveforms (inverse of analysis;
        for a mask output, ``mix_stft`` (B, 1, F, T) is the STFT the masks apply to)."""
        K2 = 2 * self.n_sources
        if self.output != "spectrum" and mix_stft is None:
            raise ValueError(f"output={self.output!r} needs the mixture's STFT (mix_stft)")
        S = 0
        if self.output != "mask":
            S = self.backward_transform(self._complex(Y[:, Y.shape[1] - K2 :], n_frames))
        if self.output != "spectrum":
            S = S + self._complex(Y[:, :K2], n_frames) * mix_stft
        return self.istft(S, length + self.pad_length(length))[..., :length]

    def forward(self, x: torch.Tensor, t: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        _check_inputs(x, t, mix, self.n_sources)
        L = x.shape[-1]
        # Under mixed precision only the backbone runs in bf16 / fp16: the STFT, the
        # compression and the complex arithmetic stay in float32 (view_as_complex has no
        # bf16 version, and the compression's powers lose too much in 8 mantissa bits).
        with torch.autocast(x.device.type, enabled=False):
            X, n_frames, S = self.analysis(torch.cat([x, mix], dim=1).float(), raw=True)
        Y = self.backbone(X, t)
        with torch.autocast(x.device.type, enabled=False):
            return self.synthesis(Y.float(), n_frames, L, S[:, -1:])


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

"""NCSN++ U-Net (Song et al., 2021) as used by SGMSE+ and DiffSep, in plain PyTorch.

`forward(x: (B, C_in, F, T), t: (B,)) -> (B, C_out, F, T)`. F must equal
`image_size` (it fixes where attention sits) and both F and T must be divisible
by 2 ** (len(ch_mult) - 1); the STFT wrapper pads T accordingly.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from networks.layers.blocks import (
    AttnBlock,
    Combine,
    ConvResample,
    ResnetBlockBigGAN,
    ResnetBlockDDPM,
)
from networks.layers.embeddings import (
    GaussianFourierProjection,
    require_positive_t,
    sinusoidal_embedding,
)
from networks.layers.fir import Resample
from networks.layers.init import conv3x3, dense, group_norm


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    value = value.lower()
    if value not in allowed:
        raise ValueError(f"NCSNpp option {name}={value!r} is not one of {allowed}")
    return value


class NCSNpp(nn.Module):
    """Noise-conditional score network++ with progressive input/output pyramids.

    The time embedding is computed from `log t` (Fourier) or `1000 t` (positional);
    with `scale_by_sigma` the last feature map is divided by t before the 1x1
    output layer, as in the SGMSE+/DiffSep code.
    """

    def __init__(
        self,
        num_channels_in: int = 6,
        num_channels_out: int = 4,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        image_size: int = 256,
        resamp_with_conv: bool = True,
        fir: bool = True,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        resblock_type: str = "biggan",
        progressive: str = "output_skip",
        progressive_input: str = "input_skip",
        progressive_combine: str = "sum",
        embedding_type: str = "fourier",
        fourier_scale: float = 16.0,
        init_scale: float = 0.0,
        dropout: float = 0.0,
        conditional: bool = True,
        centered: bool = True,
        scale_by_sigma: bool = True,
        channels_last: bool = True,
    ):
        super().__init__()
        resblock_type = _choice("resblock_type", resblock_type, ("biggan", "ddpm"))
        progressive = _choice("progressive", progressive, ("none", "output_skip", "residual"))
        progressive_input = _choice(
            "progressive_input", progressive_input, ("none", "input_skip", "residual")
        )
        progressive_combine = _choice("progressive_combine", progressive_combine, ("sum", "cat"))
        embedding_type = _choice("embedding_type", embedding_type, ("fourier", "positional"))
        if resblock_type == "biggan" and not resamp_with_conv:
            raise ValueError(
                "resamp_with_conv=False has no effect with resblock_type='biggan' (the residual "
                "blocks resample inside themselves): use resblock_type='ddpm' or leave it True"
            )
        n_levels = len(ch_mult)
        if image_size % 2 ** (n_levels - 1):
            raise ValueError(
                f"image_size={image_size} is not divisible by 2**{n_levels - 1} "
                f"(len(ch_mult)={n_levels} levels)"
            )
        self.c_in, self.c_out, self.nf = num_channels_in, num_channels_out, nf
        self.image_size, self.n_levels = image_size, n_levels
        self.embedding_type, self.conditional = embedding_type, conditional
        self.centered, self.scale_by_sigma = centered, scale_by_sigma
        self.progressive, self.progressive_input = progressive, progressive_input
        self.skip_rescale, self.channels_last = skip_rescale, channels_last
        resolutions = [image_size // 2**i for i in range(n_levels)]
        attn_levels = [res in tuple(attn_resolutions) for res in resolutions]

        # time embedding: Fourier features of log t (2 nf wide) or sinusoidal (nf wide)
        if embedding_type == "fourier":
            self.fourier = GaussianFourierProjection(nf, fourier_scale)
            embed_dim = 2 * nf
        else:
            self.fourier = None
            embed_dim = nf
        temb_dim = 4 * nf if conditional else None
        if conditional:
            self.temb_mlp = nn.ModuleList([dense(embed_dim, 4 * nf), dense(4 * nf, 4 * nf)])

        def resblock(in_ch, out_ch=None, up=False, down=False):
            if resblock_type == "biggan":
                return ResnetBlockBigGAN(
                    in_ch, out_ch, temb_dim, up, down, dropout, fir, fir_kernel,
                    skip_rescale, init_scale,
                )
            return ResnetBlockDDPM(in_ch, out_ch, temb_dim, dropout, skip_rescale, init_scale)

        def resample(mode, ch):
            # standalone resampling between DDPM blocks: learned conv or parameter-free
            if resamp_with_conv:
                return ConvResample(mode, ch, fir=fir, fir_kernel=fir_kernel)
            return Resample(mode, fir, fir_kernel)

        def attn(ch):
            return AttnBlock(ch, skip_rescale, init_scale)

        channels = num_channels_in
        self.conv_in = conv3x3(channels, nf)
        skip_ch = [nf]
        in_ch, pyr_in_ch = nf, channels
        if progressive_input == "input_skip":
            self.pyramid_down = Resample("down", fir, fir_kernel)

        # encoder: per level, resblocks (+ attention), then downsampling and pyramid merge
        self.down = nn.ModuleList()
        for lvl in range(n_levels):
            stage = nn.ModuleDict()
            stage["blocks"], stage["attn"] = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                out_ch = nf * ch_mult[lvl]
                stage["blocks"].append(resblock(in_ch, out_ch))
                in_ch = out_ch
                if attn_levels[lvl]:
                    stage["attn"].append(attn(in_ch))
                skip_ch.append(in_ch)
            if lvl != n_levels - 1:
                if resblock_type == "biggan":
                    stage["downsample"] = resblock(in_ch, down=True)
                else:
                    stage["downsample"] = resample("down", in_ch)
                if progressive_input == "input_skip":
                    stage["combine"] = Combine(pyr_in_ch, in_ch, progressive_combine)
                    if progressive_combine == "cat":
                        in_ch *= 2
                elif progressive_input == "residual":
                    stage["pyramid"] = ConvResample("down", pyr_in_ch, in_ch, fir, fir_kernel)
                    pyr_in_ch = in_ch
                skip_ch.append(in_ch)
            self.down.append(stage)

        in_ch = skip_ch[-1]
        self.mid = nn.ModuleList([resblock(in_ch), attn(in_ch), resblock(in_ch)])

        # decoder: per level, resblocks over concatenated skips, attention, pyramid, upsampling
        self.up = nn.ModuleList()
        pyr_ch = 0
        for lvl in reversed(range(n_levels)):
            stage = nn.ModuleDict()
            stage["blocks"] = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[lvl]
                stage["blocks"].append(resblock(in_ch + skip_ch.pop(), out_ch))
                in_ch = out_ch
            if attn_levels[lvl]:
                stage["attn"] = attn(in_ch)
            if progressive == "output_skip":
                stage["pyramid_norm"] = group_norm(in_ch)
                stage["pyramid_conv"] = conv3x3(in_ch, channels, init_scale=init_scale)
                pyr_ch = channels
            elif progressive == "residual":
                if lvl == n_levels - 1:
                    stage["pyramid_norm"] = group_norm(in_ch)
                    stage["pyramid_conv"] = conv3x3(in_ch, in_ch)
                else:
                    stage["pyramid_up"] = ConvResample("up", pyr_ch, in_ch, fir, fir_kernel)
                pyr_ch = in_ch
            if lvl != 0:
                if resblock_type == "biggan":
                    stage["upsample"] = resblock(in_ch, up=True)
                else:
                    stage["upsample"] = resample("up", in_ch)
            self.up.append(stage)
        assert not skip_ch
        if progressive == "output_skip":
            self.pyramid_up = Resample("up", fir, fir_kernel)
        else:
            self.out_norm = group_norm(in_ch)
            self.out_conv = conv3x3(in_ch, channels, init_scale=init_scale)
        self.output_layer = nn.Conv2d(channels, num_channels_out, 1)

    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.c_in:
            raise ValueError(
                f"NCSNpp expects x of shape (B, {self.c_in}, F, T), got {tuple(x.shape)}"
            )
        mult = 2 ** (self.n_levels - 1)
        if x.shape[2] != self.image_size or x.shape[3] % mult:
            raise ValueError(
                f"NCSNpp built for F = image_size = {self.image_size} and T divisible by {mult}; "
                f"got F={x.shape[2]}, T={x.shape[3]} (set image_size = n_fft // 2 + 1, pad frames)"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if self.scale_by_sigma or self.embedding_type == "fourier":
            require_positive_t(t, "NCSNpp needs t > 0 (it uses log t and/or divides by t)")

    def _time_embedding(self, t: torch.Tensor) -> torch.Tensor | None:
        if self.embedding_type == "fourier":
            temb = self.fourier(torch.log(t))
        else:
            temb = sinusoidal_embedding(1000.0 * t, self.nf)
        if not self.conditional:
            return None
        return self.temb_mlp[1](F.silu(self.temb_mlp[0](temb)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, t)
        if self.channels_last:
            # NHWC lets oneDNN / cuDNN run the 3x3 convs without layout conversions
            x = x.contiguous(memory_format=torch.channels_last)
        temb = self._time_embedding(t)
        if not self.centered:
            x = 2 * x - 1

        pyramid_in = x
        hs = [self.conv_in(x)]
        for stage in self.down:
            for i, block in enumerate(stage["blocks"]):
                h = block(hs[-1], temb)
                if len(stage["attn"]):
                    h = stage["attn"][i](h)
                hs.append(h)
            if "downsample" in stage:
                down = stage["downsample"]
                h = down(hs[-1], temb) if self._is_res(stage) else down(hs[-1])
                if self.progressive_input == "input_skip":
                    pyramid_in = self.pyramid_down(pyramid_in)
                    h = stage["combine"](pyramid_in, h)
                elif self.progressive_input == "residual":
                    pyramid_in = self._sum(stage["pyramid"](pyramid_in), h)
                    h = pyramid_in
                hs.append(h)

        h = self.mid[0](hs[-1], temb)
        h = self.mid[2](self.mid[1](h), temb)

        pyramid = None
        for stage in self.up:
            for block in stage["blocks"]:
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
            if "attn" in stage:
                h = stage["attn"](h)
            if self.progressive == "output_skip":
                p = stage["pyramid_conv"](F.silu(stage["pyramid_norm"](h)))
                pyramid = p if pyramid is None else self.pyramid_up(pyramid) + p
            elif self.progressive == "residual":
                if pyramid is None:
                    pyramid = stage["pyramid_conv"](F.silu(stage["pyramid_norm"](h)))
                else:
                    pyramid = self._sum(stage["pyramid_up"](pyramid), h)
                    h = pyramid
            if "upsample" in stage:
                up = stage["upsample"]
                h = up(h, temb) if self._is_res(stage, "upsample") else up(h)
        assert not hs

        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = self.out_conv(F.silu(self.out_norm(h)))
        if self.scale_by_sigma:
            h = h / t[:, None, None, None]
        return self.output_layer(h).contiguous()

    def _sum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b) / 2**0.5 if self.skip_rescale else a + b

    @staticmethod
    def _is_res(stage: nn.ModuleDict, key: str = "downsample") -> bool:
        return isinstance(stage[key], ResnetBlockBigGAN)

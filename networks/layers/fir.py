"""FIR up/down-sampling (upfirdn2d) with plain PyTorch ops.

The StyleGAN2 / score_sde resampling filters a (zero-inserted) image with the
outer product of a 1-D kernel. Here the filter is a depthwise (grouped) conv2d
and zero insertion is folded into a depthwise transposed conv with stride 2, so
the same code runs on CPU and GPU without a compiled extension.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def fir_kernel_2d(kernel: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Outer product of a 1-D kernel with itself, normalised to sum 1."""
    if not isinstance(kernel, torch.Tensor):
        kernel = [float(v) for v in kernel]  # also accepts OmegaConf ListConfig
    k = torch.as_tensor(kernel, dtype=torch.float32)
    if k.ndim == 1:
        k = torch.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"FIR kernel must be 1-D or square 2-D, got shape {tuple(k.shape)}")
    return k / k.sum()


def _depthwise(k2d: torch.Tensor, channels: int, x: torch.Tensor) -> torch.Tensor:
    return k2d.to(dtype=x.dtype, device=x.device)[None, None].expand(channels, 1, *k2d.shape)


def upfirdn2d(
    x: torch.Tensor, k2d: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Generic upfirdn2d: zero-insert by `up`, pad (p0, p1) both axes, convolve, keep every `down`.

    The kernel is applied as a true convolution (flipped), as in upfirdn2d. Negative
    padding crops. This is the general, slower path; the resampling helpers below
    use equivalent fused forms.
    """
    B, C, H, W = x.shape
    if up > 1:
        xu = x.new_zeros(B, C, H * up, W * up)
        xu[:, :, ::up, ::up] = x
        x = xu
    p0, p1 = pad
    x = F.pad(x, (p0, p1, p0, p1))
    w = _depthwise(torch.flip(k2d, [0, 1]), C, x)
    return F.conv2d(x, w, stride=down, groups=C)


def fir_upsample_2d(x: torch.Tensor, k2d: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Upsample by `factor` with FIR kernel `k2d` (gain factor**2), output (H*f, W*f).

    Equals upfirdn2d(x, k*f^2, up=f, pad=((p+1)//2 + f - 1, p//2)), p = len(k) - f,
    computed as one depthwise transposed convolution (no explicit zero insertion).
    """
    C = x.shape[1]
    n = k2d.shape[0]
    p = n - factor
    p0 = (p + 1) // 2 + factor - 1
    # transposed conv: y[m] = sum_n x[n] w[m + pad - f n]; matching the upfirdn sum
    # y[m] = sum_n x[n] kflip[p0 + f n - m] gives w = k (unflipped), pad = n - 1 - p0.
    w = _depthwise(k2d * factor**2, C, x)
    pad = n - 1 - p0
    out = F.conv_transpose2d(x, w, stride=factor, padding=max(pad, 0), groups=C)
    if pad < 0:
        out = F.pad(out, (-pad, -pad, -pad, -pad))
    H, W = x.shape[-2:]
    return out[..., : H * factor, : W * factor]


def fir_downsample_2d(x: torch.Tensor, k2d: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Filter with `k2d` then keep every `factor`-th sample (a strided depthwise conv)."""
    p = k2d.shape[0] - factor
    return upfirdn2d(x, k2d, down=factor, pad=((p + 1) // 2, p // 2))


def fir_upsample_conv_2d(
    x: torch.Tensor, weight: torch.Tensor, k2d: torch.Tensor, factor: int = 2
) -> torch.Tensor:
    """Fused transposed 3x3 conv (stride `factor`) followed by FIR filtering (score_sde)."""
    conv_k = weight.shape[-1]
    p = (k2d.shape[0] - factor) - (conv_k - 1)
    # conv_transpose2d takes (in, out, kh, kw); flipping makes it the adjoint of a
    # correlation with `weight`, as in the reference implementation.
    w = torch.flip(weight, [2, 3]).transpose(0, 1)
    x = F.conv_transpose2d(x, w, stride=factor)
    return upfirdn2d(x, k2d * factor**2, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def fir_conv_downsample_2d(
    x: torch.Tensor, weight: torch.Tensor, k2d: torch.Tensor, factor: int = 2
) -> torch.Tensor:
    """FIR filtering followed by a strided 3x3 conv (score_sde)."""
    conv_k = weight.shape[-1]
    p = (k2d.shape[0] - factor) + (conv_k - 1)
    x = upfirdn2d(x, k2d, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, weight, stride=factor)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.avg_pool2d(x, factor, stride=factor)


class Resample(nn.Module):
    """Parameter-free 2x up- or down-sampling: FIR (kernel buffer) or nearest/average."""

    def __init__(self, mode: str, fir: bool = True, fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if mode not in ("up", "down"):
            raise ValueError(f"Resample mode must be 'up' or 'down', got {mode!r}")
        self.mode = mode
        self.fir = fir
        # not persistent: the kernel is configuration, not a learned state
        self.register_buffer("k2d", fir_kernel_2d(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "up":
            return fir_upsample_2d(x, self.k2d) if self.fir else naive_upsample_2d(x)
        return fir_downsample_2d(x, self.k2d) if self.fir else naive_downsample_2d(x)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, fir={self.fir}, kernel_size={self.k2d.shape[0]}"

"""FIR up/down-sampling against a direct numpy evaluation of the upfirdn2d definition."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from networks.layers.blocks import ConvResample
from networks.layers.fir import (
    Resample,
    fir_conv_downsample_2d,
    fir_downsample_2d,
    fir_kernel_2d,
    fir_upsample_2d,
    fir_upsample_conv_2d,
    upfirdn2d,
)


def ref_upfirdn(x, k, up, down, p0, p1):
    """Loops over the definition: zero-insert, pad, true 2-D convolution, subsample."""
    C, H, W = x.shape
    xu = np.zeros((C, H * up, W * up))
    xu[:, ::up, ::up] = x
    xp = np.zeros((C, H * up + p0 + p1, W * up + p0 + p1))
    xp[:, p0 : p0 + H * up, p0 : p0 + W * up] = xu
    n = k.shape[0]
    oh, ow = xp.shape[1] - n + 1, xp.shape[2] - n + 1
    out = np.zeros((C, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(n):
                for b in range(n):
                    # convolution: kernel index runs backwards over the input window
                    out[:, i, j] += xp[:, i + a, j + b] * k[n - 1 - a, n - 1 - b]
    return out[:, ::down, ::down]


def ref_correlate(x, w, pad, stride=1):
    """Multi-channel 'valid' cross-correlation after zero padding (what conv2d computes)."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    O, C, n, _ = w.shape
    oh, ow = xp.shape[1] - n + 1, xp.shape[2] - n + 1
    out = np.zeros((O, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = np.einsum("ocab,cab->o", w, xp[:, i : i + n, j : j + n])
    return out[:, ::stride, ::stride]


KERNELS = [(1, 3, 3, 1), (1, 2, 5, 3)]  # the second is asymmetric: checks the flip


def _outer(k):
    k = np.outer(k, k).astype(np.float64)
    return k / k.sum()


@pytest.mark.parametrize("kernel", KERNELS)
def test_upsample_matches_reference(kernel):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    k = _outer(kernel)
    ref = ref_upfirdn(x[0].numpy(), k * 4, up=2, down=1, p0=2, p1=1)
    out = fir_upsample_2d(x, torch.from_numpy(k))
    assert out.shape == (1, 3, 10, 12)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-12)
    # the generic zero-insertion path agrees with the fused transposed conv
    gen = upfirdn2d(x, torch.from_numpy(k * 4), up=2, pad=(2, 1))
    np.testing.assert_allclose(gen.numpy(), out.numpy(), atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_downsample_matches_reference(kernel):
    torch.manual_seed(1)
    x = torch.randn(1, 2, 8, 6, dtype=torch.float64)
    k = _outer(kernel)
    ref = ref_upfirdn(x[0].numpy(), k, up=1, down=2, p0=1, p1=1)
    out = fir_downsample_2d(x, torch.from_numpy(k))
    assert out.shape == (1, 2, 4, 3)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-12)


def test_upsample_conv_matches_reference():
    """Transposed 3x3 conv (stride 2) then FIR: zero-insert, correlate with pad 2, filter."""
    torch.manual_seed(2)
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    k = _outer((1, 3, 3, 1))
    xu = np.zeros((3, 7, 9))
    xu[:, ::2, ::2] = x[0].numpy()
    y = ref_correlate(xu, w.numpy(), pad=2)  # (2, 9, 11)
    ref = ref_upfirdn(y, k * 4, up=1, down=1, p0=1, p1=1)
    out = fir_upsample_conv_2d(x, w, torch.from_numpy(k))
    assert out.shape == (1, 2, 8, 10)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-10)


def test_conv_downsample_matches_reference():
    torch.manual_seed(3)
    x = torch.randn(1, 3, 8, 10, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    k = _outer((1, 3, 3, 1))
    y = ref_upfirdn(x[0].numpy(), k, up=1, down=1, p0=2, p1=2)
    ref = ref_correlate(y, w.numpy(), pad=0, stride=2)
    out = fir_conv_downsample_2d(x, w, torch.from_numpy(k))
    assert out.shape == (1, 2, 4, 5)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-10)


def test_fused_conv_resampling_commutes_with_plain_conv():
    """Away from the borders, filtering and a 3x3 conv commute (both are LTI)."""
    torch.manual_seed(4)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    k = fir_kernel_2d((1, 3, 3, 1)).double()
    up = fir_upsample_conv_2d(x, w, k)
    up_ref = F.conv2d(fir_upsample_2d(x, k), w, padding=1)
    torch.testing.assert_close(up[..., 4:-4, 4:-4], up_ref[..., 4:-4, 4:-4])
    down = fir_conv_downsample_2d(x, w, k)
    down_ref = fir_downsample_2d(F.conv2d(x, w, padding=1), k)
    torch.testing.assert_close(down[..., 2:-2, 2:-2], down_ref[..., 2:-2, 2:-2])


def test_dc_gain_is_one():
    x = torch.full((1, 2, 8, 8), 3.0)
    for mode in ("up", "down"):
        y = Resample(mode, fir=True)(x)
        # borders see zero padding; the interior of a constant image stays constant
        torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 3.0))


def test_naive_resampling():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    up = Resample("up", fir=False)(x)
    assert torch.equal(up[0, 0, ::2, ::2], x[0, 0]) and torch.equal(up[0, 0, 1::2, 1::2], x[0, 0])
    down = Resample("down", fir=False)(x)
    assert torch.equal(down[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))


@pytest.mark.parametrize("fir", [True, False])
@pytest.mark.parametrize("mode", ["up", "down"])
def test_conv_resample_shapes(mode, fir):
    m = ConvResample(mode, 4, 6, fir=fir)
    y = m(torch.randn(2, 4, 8, 16))
    assert y.shape == ((2, 6, 16, 32) if mode == "up" else (2, 6, 4, 8))


def test_bad_kernel_raises():
    with pytest.raises(ValueError, match="square"):
        fir_kernel_2d(torch.ones(2, 3))
    with pytest.raises(ValueError, match="mode"):
        Resample("sideways")

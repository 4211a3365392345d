"""BSS Eval v4 (SiSEC 2018 / MUSDB18): framewise SDR, ISR, SIR and SAR.

Same quantities as ``museval.metrics.bss_eval`` with ``framewise_filters=False``,
``compute_permutation=False`` and ``bsseval_sources_version=False`` (the
"images" decomposition): the multichannel distortion filters (``filter_len``
taps) are solved once on the whole track, then every window's reference
segments are filtered with them and only the energy ratios are framewise.

Speed comes from solving every estimate's filters with one factorisation of
the reference Gram matrix, from block-wise FFT correlations (memory stays
bounded on long tracks) and from computing the window energies in the
frequency domain (Parseval), batched over windows, sources and channels.
"""

import warnings

import numpy as np
import scipy.linalg
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sfft

_EPS = np.finfo(np.float64).eps  # museval's diagonal loading of the Gram matrix
_CORR_FFT = 16384  # FFT size of the blocks used for the track-wide correlations
_CHUNK_BINS = 1 << 22  # complex values per window chunk (bounds peak memory)


def _as_sources(x: np.ndarray) -> np.ndarray:
    """(n_sources, n_samples[, n_channels]) array-like -> float64 (S, N, C)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"expected (n_sources, n_samples[, n_channels]), got {x.shape}")
    return x


def _silent(x: np.ndarray) -> np.ndarray:
    """True where a source (..., n_samples, n_channels) sums to zero at every sample.

    Same test as museval (channels summed first), so both flag the same windows.
    """
    return np.all(x.sum(axis=-1) == 0, axis=-1)


def frame_starts(n_samples: int, win: int, hop: int) -> tuple[np.ndarray, int]:
    """Window start samples and the common window length (museval's framing).

    Only full windows are kept (a trailing partial window is dropped); a window
    at least as long as the signal gives one window over the whole signal.
    """
    win, hop = int(win), int(hop)
    if win <= 0 or hop <= 0:
        raise ValueError("win and hop must be positive")
    if win >= n_samples:
        return np.zeros(1, dtype=np.int64), n_samples
    n_win = (n_samples - win + hop) // hop
    return np.arange(n_win, dtype=np.int64) * hop, win


def _lagged_correlations(x: np.ndarray, y: np.ndarray, max_lag: int) -> np.ndarray:
    """r[q, p, m] = sum_n y[q, n + m - max_lag] * x[p, n], m = 0..2 max_lag.

    Signals are zero outside [0, N). The cross-spectra of short blocks are
    summed before one inverse FFT per pair, so the cost is that of a full-length
    FFT correlation but memory does not grow with the track length.
    """
    n_x, n = x.shape
    n_y = y.shape[0]
    span = 2 * max_lag
    n_fft = _CORR_FFT if n + span > _CORR_FFT else sfft.next_fast_len(n + span, real=True)
    block = n_fft - span
    n_blocks = -(-n // block)
    x_pad = np.zeros((n_x, n_blocks * block))
    x_pad[:, :n] = x
    x_blocks = x_pad.reshape(n_x, n_blocks, block)
    # y segments reach max_lag samples before and after each x block
    y_pad = np.zeros((n_y, n_blocks * block + span))
    y_pad[:, max_lag : max_lag + n] = y
    y_segs = sliding_window_view(y_pad, block + span, axis=1)[:, ::block]

    n_bins = n_fft // 2 + 1
    cross = np.zeros((n_bins, n_y, n_x), dtype=np.complex128)
    step = max(1, _CHUNK_BINS // (n_bins * (n_x + n_y)))
    for b0 in range(0, n_blocks, step):
        xf = sfft.rfft(x_blocks[:, b0 : b0 + step], n=n_fft, axis=-1)
        yf = sfft.rfft(y_segs[:, b0 : b0 + step], n=n_fft, axis=-1)
        # sum over blocks as a batched matmul over frequency bins
        cross += np.matmul(yf.transpose(2, 0, 1), xf.conj().transpose(2, 1, 0))
    r = sfft.irfft(cross, n=n_fft, axis=0)[: span + 1]
    return r.transpose(1, 2, 0)


def _solve_psd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve (a + eps I) z = b as museval does; Cholesky first, LU if not PD."""
    loaded = a.copy()
    loaded.flat[:: a.shape[0] + 1] += _EPS
    try:
        factor = scipy.linalg.cho_factor(loaded, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, b, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    loaded = a.copy()
    loaded.flat[:: a.shape[0] + 1] += _EPS
    try:
        return scipy.linalg.solve(loaded, b, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return np.linalg.lstsq(a, b, rcond=None)[0]


def distortion_filters(
    references: np.ndarray, estimates: np.ndarray, filter_len: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Track-wide least-squares distortion filters.

    Returns ``c_all`` (S_ref, C_ref, filter_len, S_est, C_est): estimate j
    projected on all delayed reference channels, and ``c_own``
    (S, C_ref, filter_len, C_est): estimate j projected on reference j alone.
    """
    refs, ests = _as_sources(references), _as_sources(estimates)
    n_sources, n, n_ch = refs.shape
    n_p = n_sources * n_ch
    x = refs.transpose(0, 2, 1).reshape(n_p, n)
    y = np.concatenate([x, ests.transpose(0, 2, 1).reshape(n_p, n)])
    lag = filter_len - 1
    r = _lagged_correlations(x, y, lag)

    # Gram of delayed reference channels: <x_q delayed a, x_p delayed b> = r_qp[b - a]
    taps = np.arange(filter_len)
    lags = taps[None, :] - taps[:, None] + lag
    gram = np.empty((n_p, filter_len, n_p, filter_len))
    for q in range(n_p):
        gram[q] = r[q][:, lags].transpose(1, 0, 2)
    gram = gram.reshape(n_p * filter_len, n_p * filter_len)
    # <x_p delayed a, estimate channel e> = r_ep[a]
    rhs = r[n_p:, :, lag:].transpose(1, 2, 0).reshape(n_p * filter_len, n_p)

    c_all = _solve_psd(gram, rhs).reshape(n_sources, n_ch, filter_len, n_sources, n_ch)
    c_own = np.empty((n_sources, n_ch, filter_len, n_ch))
    block = n_ch * filter_len
    for j in range(n_sources):
        rows = slice(j * block, (j + 1) * block)
        cols = slice(j * n_ch, (j + 1) * n_ch)
        c_own[j] = _solve_psd(gram[rows, rows], rhs[rows, cols]).reshape(n_ch, filter_len, n_ch)
    return c_all, c_own


def _db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """10 log10(num / den) with +inf where den == 0 (museval's convention)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(num / den)
    return np.where(den == 0, np.inf, out)


def bss_eval_v4(
    references: np.ndarray,
    estimates: np.ndarray,
    win: int,
    hop: int,
    filter_len: int = 512,
) -> dict[str, np.ndarray]:
    """Framewise BSS Eval v4 metrics, no permutation (estimate j scored against reference j).

    ``references``/``estimates``: (n_sources, n_samples, n_channels) or
    (n_sources, n_samples). ``win``/``hop`` in samples. Returns "sdr", "isr",
    "sir", "sar" arrays of shape (n_sources, n_windows) in dB; a window where
    any reference or estimate is silent is NaN for every source, as in museval.
    """
    refs, ests = _as_sources(references), _as_sources(estimates)
    if refs.shape != ests.shape:
        raise ValueError(f"shape mismatch: references {refs.shape}, estimates {ests.shape}")
    if np.any(_silent(refs)) or np.any(_silent(ests)):
        # the projection is undefined for an all-zero source (museval raises too)
        raise ValueError("every reference and estimate must be non-silent over the track")
    n_sources, n, n_ch = refs.shape
    c_all, c_own = distortion_filters(refs, ests, filter_len)

    starts, w_len = frame_starts(n, win, hop)
    n_fft = sfft.next_fast_len(w_len + filter_len - 1, real=True)
    n_bins = n_fft // 2 + 1
    # filters in the frequency domain: (f, S_ref * C_ref, S_est * C_est) and (S, f, C_ref, C_est)
    cf_all = sfft.rfft(c_all, n=n_fft, axis=2).transpose(2, 0, 1, 3, 4)
    cf_all = cf_all.reshape(n_bins, n_sources * n_ch, n_sources * n_ch)
    cf_own = sfft.rfft(c_own, n=n_fft, axis=2).transpose(0, 2, 1, 3)
    # Parseval weights for a one-sided spectrum
    weight = np.full(n_bins, 2.0 / n_fft)
    weight[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weight[-1] = 1.0 / n_fft

    def energy(z: np.ndarray) -> np.ndarray:
        # z: (f, w, S, C) spectra -> (w, S) time-domain energies of the padded signals
        return np.einsum("f,fwsc->ws", weight, z.real**2 + z.imag**2)

    names = ("sdr", "isr", "sir", "sar")
    out = {k: np.full((n_sources, len(starts)), np.nan) for k in names}
    step = max(1, _CHUNK_BINS // (n_bins * n_sources * n_ch))
    offsets = np.arange(w_len)
    for w0 in range(0, len(starts), step):
        idx = starts[w0 : w0 + step, None] + offsets  # (w, L)
        ref_w, est_w = refs[:, idx], ests[:, idx]  # (S, w, L, C)
        silent = np.any(_silent(ref_w), axis=0) | np.any(_silent(est_w), axis=0)
        # reference segments filtered by track-wide filters (segment convolved, tails kept)
        xf = sfft.rfft(ref_w, n=n_fft, axis=2).transpose(2, 1, 0, 3)  # (f, w, S, C)
        nw = xf.shape[1]
        proj = np.matmul(xf.reshape(n_bins, nw, n_sources * n_ch), cf_all)
        proj = proj.reshape(n_bins, nw, n_sources, n_ch)  # s_true + e_spat + e_interf
        proj_own = np.einsum("fwja,jfac->fwjc", xf, cf_own)  # s_true + e_spat
        ef = sfft.rfft(est_w, n=n_fft, axis=2).transpose(2, 1, 0, 3)

        e_true = np.sum(ref_w**2, axis=(2, 3)).T  # (w, S)
        sdr = _db(e_true, np.sum((est_w - ref_w) ** 2, axis=(2, 3)).T)
        isr = _db(e_true, energy(proj_own - xf))
        sir = _db(energy(proj_own), energy(proj - proj_own))
        sar = _db(energy(proj), energy(ef - proj))
        for key, val in zip(names, (sdr, isr, sir, sar)):
            val[silent] = np.nan
            out[key][:, w0 : w0 + nw] = val.T
    return out


def _pad_or_truncate(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    """Estimates cut or zero-padded at the end to the reference length (museval.evaluate)."""
    n = refs.shape[1]
    if ests.shape[1] >= n:
        return ests[:, :n]
    pad = [(0, 0)] * ests.ndim
    pad[1] = (0, n - ests.shape[1])
    return np.pad(ests, pad)


def track_metrics(
    references: np.ndarray,
    estimates: np.ndarray,
    fs: int,
    win_s: float = 1.0,
    hop_s: float = 1.0,
    filter_len: int = 512,
) -> dict[str, np.ndarray]:
    """Per-source median over windows (NaN windows ignored) of all four metrics."""
    refs, ests = _as_sources(references), _as_sources(estimates)
    ests = _pad_or_truncate(refs, ests)
    frames = bss_eval_v4(refs, ests, int(win_s * fs), int(hop_s * fs), filter_len)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN source -> NaN
        return {k: np.nanmedian(v, axis=1) for k, v in frames.items()}


def track_sdr(references: np.ndarray, estimates: np.ndarray, fs: int) -> np.ndarray:
    """Per-source SDR of one track: median over 1-s windows (SiSEC 2018 convention)."""
    return track_metrics(references, estimates, fs)["sdr"]


def aggregate_tracks(per_track: list[np.ndarray]) -> np.ndarray:
    """Per-source median over tracks of per-track scores (NaN tracks ignored)."""
    scores = np.stack([np.asarray(t, dtype=np.float64) for t in per_track])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(scores, axis=0)

"""BSS Eval v4 against museval's reference implementation and closed-form cases."""

import importlib.util
import os

import numpy as np
import pytest
from scipy.signal import lfilter

from evaluation.bss_eval_v4 import (
    aggregate_tracks,
    bss_eval_v4,
    frame_starts,
    track_metrics,
    track_sdr,
)

FS = 8000
METRICS = ("sdr", "isr", "sir", "sar")


@pytest.fixture(scope="module")
def museval_metrics():
    """museval.metrics loaded directly (the package __init__ needs ffmpeg via stempeg)."""
    spec = importlib.util.find_spec("museval")
    if spec is None:
        pytest.skip("museval not installed")
    path = os.path.join(spec.submodule_search_locations[0], "metrics.py")
    mod_spec = importlib.util.spec_from_file_location("museval_metrics", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def make_signals(n_sources: int, seconds: float, n_ch: int, seed: int):
    """Coloured-noise stems; estimates = references + filtered interference + noise.

    Reference 1 is silent during the second window so that window must be NaN.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    refs = lfilter([1.0], [1.0, -0.8], rng.standard_normal((n_sources, n, n_ch)), axis=1)
    refs *= rng.uniform(0.5, 2.0, size=(n_sources, 1, 1))
    refs[1, FS : 2 * FS] = 0.0
    interf = lfilter([0.6, 0.3, -0.2], [1.0], np.roll(refs, 1, axis=0), axis=1)
    ests = lfilter([1.0, 0.4], [1.0], refs, axis=1) + 0.5 * interf
    ests += 0.1 * rng.standard_normal(ests.shape)
    return refs, ests


def run_museval(module, refs, ests, win, hop, filter_len):
    out = module.bss_eval(
        refs,
        ests,
        window=win,
        hop=hop,
        compute_permutation=False,
        filters_len=filter_len,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    return dict(zip(METRICS, out[:4]))


def assert_close_to_museval(ours, theirs):
    for key in METRICS:
        assert ours[key].shape == theirs[key].shape
        np.testing.assert_array_equal(np.isnan(ours[key]), np.isnan(theirs[key]))
        np.testing.assert_allclose(ours[key], theirs[key], atol=0.01, rtol=0, err_msg=key)


@pytest.mark.parametrize(
    "n_sources, n_ch, filter_len, win, hop",
    [
        (4, 1, 512, FS, FS),  # the MUSDB convention, mono
        (2, 2, 512, FS, FS),  # stereo with the default filter length
        (4, 2, 256, FS, FS),  # four stereo stems (shorter filters keep museval fast)
        (3, 2, 128, FS, FS // 2),  # overlapping windows
    ],
)
def test_matches_museval(museval_metrics, n_sources, n_ch, filter_len, win, hop):
    refs, ests = make_signals(n_sources, 3.6, n_ch, seed=n_sources + n_ch + filter_len)
    if n_ch == 1:
        refs, ests = refs[..., 0], ests[..., 0]  # (n_sources, n_samples) input
    ours = bss_eval_v4(refs, ests, win, hop, filter_len)
    theirs = run_museval(museval_metrics, refs, ests, win, hop, filter_len)
    assert_close_to_museval(ours, theirs)
    # the silent window is NaN for every source, the others are finite
    starts = np.arange(ours["sdr"].shape[1]) * hop
    silent = (starts >= FS) & (starts + win <= 2 * FS)
    assert silent.sum() == 1
    assert np.all(np.isnan(ours["sdr"][:, silent]))
    assert np.all(np.isfinite(ours["sdr"][:, ~silent]))


def test_window_longer_than_signal(museval_metrics):
    refs, ests = make_signals(2, 1.5, 2, seed=3)
    refs[1, FS:] = 1e-3  # no silent stretch: one window over the whole signal
    ours = bss_eval_v4(refs, ests, 10 * FS, 10 * FS, 64)
    theirs = run_museval(museval_metrics, refs, ests, 10 * FS, 10 * FS, 64)
    assert ours["sdr"].shape == (2, 1)
    assert_close_to_museval(ours, theirs)


@pytest.mark.parametrize("n, win, hop", [(1000, 300, 300), (1000, 300, 70), (999, 1000, 5)])
def test_framing_matches_museval(museval_metrics, n, win, hop):
    starts, length = frame_starts(n, win, hop)
    slices = list(museval_metrics.Framing(win, hop, n))
    assert [s.start for s in slices] == starts.tolist()
    assert all(s.stop - s.start == length for s in slices)


def test_track_medians_and_aggregation(museval_metrics):
    refs, ests = make_signals(4, 3.6, 1, seed=7)
    theirs = run_museval(museval_metrics, refs, ests, FS, FS, 512)
    # a longer estimate is cut to the reference length, as museval.evaluate does
    longer = np.concatenate([ests, np.ones((4, 100, 1))], axis=1)
    medians = track_metrics(refs, longer, FS)
    for key in METRICS:
        np.testing.assert_allclose(medians[key], np.nanmedian(theirs[key], axis=1), atol=0.01)
    np.testing.assert_array_equal(track_sdr(refs, longer, FS), medians["sdr"])

    rng = np.random.default_rng(0)
    tracks = [rng.normal(5.0, 2.0, size=4) for _ in range(5)]
    np.testing.assert_allclose(aggregate_tracks(tracks), np.median(np.stack(tracks), axis=0))
    tracks[2][1] = np.nan  # a track whose source had only silent windows is skipped
    expected = np.median(np.stack([t[1] for i, t in enumerate(tracks) if i != 2]))
    assert aggregate_tracks(tracks)[1] == pytest.approx(expected)


def test_perfect_estimate_scores_very_high():
    refs, _ = make_signals(3, 2.0, 2, seed=11)
    refs[1, FS : 2 * FS] = 0.5  # keep every window non-silent
    out = bss_eval_v4(refs, refs.copy(), FS, FS, 128)
    assert np.all(out["sdr"] > 100)
    for key in ("isr", "sir", "sar"):
        assert np.all(out[key] > 60), key


def test_white_noise_gives_known_snr():
    """est = ref + independent white noise at SNR 10 dB: SDR = SAR = 10 dB, SIR, ISR high.

    The least-squares projection absorbs about filter_len * n_channels / n_samples of
    the noise energy into the filtered references, hence the loose SAR tolerance.
    """
    rng = np.random.default_rng(5)
    snr_db, n = 10.0, 4 * FS
    refs = rng.standard_normal((2, n)) * np.array([[1.0], [3.0]])
    noise = rng.standard_normal((2, n))
    noise *= np.sqrt(np.mean(refs**2, axis=1, keepdims=True) / 10 ** (snr_db / 10))
    out = bss_eval_v4(refs, refs + noise, FS, FS, 128)
    np.testing.assert_allclose(out["sdr"], snr_db, atol=0.3)
    np.testing.assert_allclose(out["sar"], snr_db, atol=0.3)
    assert np.all(out["sir"] > snr_db + 10)
    assert np.all(out["isr"] > snr_db + 10)


def test_rejects_bad_input():
    refs, ests = make_signals(2, 1.0, 1, seed=1)
    with pytest.raises(ValueError):
        bss_eval_v4(refs, ests[:, :-1], FS, FS)
    refs[0] = 0.0
    with pytest.raises(ValueError):
        bss_eval_v4(refs, ests, FS, FS)

"""Metric functions against closed forms, direct projections and fast_bss_eval."""

import itertools

import fast_bss_eval
import numpy as np
import pytest
import torch

from metrics.separation import (
    default_pesq_mode,
    pairwise_si_sdr,
    pesq_score,
    pit_si_sdr,
    si_bss_eval,
    si_sdr,
    stoi_score,
)


def _orthogonal_pair(n, rng):
    """Zero-mean ref and a zero-mean noise orthogonal to it."""
    ref = rng.standard_normal(n)
    ref -= ref.mean()
    noise = rng.standard_normal(n)
    noise -= noise.mean()
    noise -= (noise @ ref) / (ref @ ref) * ref
    return ref, noise


def test_si_sdr_closed_form_and_scale_invariance():
    rng = np.random.default_rng(0)
    ref, noise = _orthogonal_pair(4000, rng)
    a, b = 0.7, 0.2
    est = a * ref + b * noise
    expected = 20 * np.log10(abs(a) * np.linalg.norm(ref) / (abs(b) * np.linalg.norm(noise)))
    got = si_sdr(torch.tensor(est), torch.tensor(ref))
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # Scaling the estimate (even by a negative factor) leaves SI-SDR unchanged.
    got_scaled = si_sdr(torch.tensor(-13.0 * est), torch.tensor(ref))
    assert got_scaled.item() == pytest.approx(expected, abs=1e-6)
    # zero_mean=True ignores a DC offset, zero_mean=False does not.
    off = torch.tensor(est + 5.0)
    assert si_sdr(off, torch.tensor(ref)).item() == pytest.approx(expected, abs=1e-6)
    assert si_sdr(off, torch.tensor(ref), zero_mean=False).item() < expected - 10


def _mixed_sources(k, n, rng):
    ref = rng.standard_normal((k, n))
    # Each estimate: mostly its source, some leakage, some independent artefact.
    leak = 0.1 * rng.standard_normal((k, k))
    np.fill_diagonal(leak, 1.0)
    est = leak @ ref + 0.05 * rng.standard_normal((k, n))
    return est, ref


@pytest.mark.parametrize("k", [2, 3, 4])
def test_pit_resolves_shuffled_estimates(k):
    rng = np.random.default_rng(k)
    batch = [_mixed_sources(k, 2000, rng) for _ in range(3)]
    est = torch.tensor(np.stack([e for e, _ in batch]), dtype=torch.float32)
    ref = torch.tensor(np.stack([r for _, r in batch]), dtype=torch.float32)
    ordered = si_sdr(est, ref)
    shuffles = torch.stack([torch.randperm(k, generator=torch.Generator().manual_seed(b))
                            for b in range(3)])
    shuffled = torch.stack([est[b, shuffles[b]] for b in range(3)])
    scores, perm = pit_si_sdr(shuffled, ref)
    torch.testing.assert_close(scores, ordered)
    # perm[b, i] is the shuffled index that holds source i.
    for b in range(3):
        assert torch.equal(shuffles[b][perm[b]], torch.arange(k))
    # The best permutation by brute force agrees.
    pair = pairwise_si_sdr(shuffled, ref)
    for b in range(3):
        best = max(itertools.permutations(range(k)),
                   key=lambda p: sum(pair[b, i, p[i]].item() for i in range(k)))
        assert list(best) == perm[b].tolist()


def _direct_projections(est_j, ref, i):
    """SI-SDR/SIR/SAR of est j against ref i by explicit least squares."""
    r = ref[i]
    s_target = (est_j @ r) / (r @ r) * r
    coef, *_ = np.linalg.lstsq(ref.T, est_j, rcond=None)
    p_all = ref.T @ coef
    e_interf = p_all - s_target
    e_artif = est_j - p_all
    db = lambda a, b: 10 * np.log10(np.sum(a**2) / np.sum(b**2))  # noqa: E731
    sdr = db(s_target, e_interf + e_artif)
    return sdr, db(s_target, e_interf), db(s_target + e_interf, e_artif)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_si_bss_eval_matches_direct_projection_and_fast_bss_eval(k):
    rng = np.random.default_rng(10 + k)
    est, ref = _mixed_sources(k, 3000, rng)
    est -= est.mean(-1, keepdims=True)
    ref -= ref.mean(-1, keepdims=True)
    shuffle = rng.permutation(k)
    res = si_bss_eval(est[shuffle], ref)
    # The estimate matched to reference i is the one that came from source i.
    assert np.array_equal(shuffle[res["perm"]], np.arange(k))
    for i in range(k):
        sdr, sir, sar = _direct_projections(est[i], ref, i)
        assert res["si_sdr"][i] == pytest.approx(sdr, abs=1e-6)
        assert res["si_sir"][i] == pytest.approx(sir, abs=1e-6)
        assert res["si_sar"][i] == pytest.approx(sar, abs=1e-6)
    fb_sdr, fb_sir, fb_sar = fast_bss_eval.si_bss_eval_sources(
        ref, est, zero_mean=True, compute_permutation=False)
    np.testing.assert_allclose(res["si_sdr"], fb_sdr, atol=1e-4)
    np.testing.assert_allclose(res["si_sir"], fb_sir, atol=1e-4)
    np.testing.assert_allclose(res["si_sar"], fb_sar, atol=1e-4)


def test_permutation_by_sir_not_sdr():
    """An estimate with low SIR but little artefact is not preferred over its source."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((2, 4000))
    est = ref.copy()
    est[0] = ref[0] + 0.3 * ref[1]  # some interference
    est[1] = ref[1] + 0.5 * rng.standard_normal(4000)  # artefacts only
    res = si_bss_eval(est[::-1].copy(), ref)
    assert res["perm"].tolist() == [1, 0]
    fixed = si_bss_eval(est, ref, permute=False)
    assert fixed["perm"].tolist() == [0, 1]
    # est 1 only leaks through chance correlation of its artefact with ref 0.
    assert fixed["si_sir"][1] > fixed["si_sir"][0] + 15


def _speech_like(fs, seconds, rng):
    """Bursty harmonic signal: enough structure for PESQ's VAD and STOI."""
    t = np.arange(int(fs * seconds)) / fs
    env = (np.sin(2 * np.pi * 2.5 * t) > 0).astype(float) * np.hanning(len(t))
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    sig = sum(np.sin(h * phase) / h for h in range(1, 12)) * env
    return 0.3 * sig + 1e-3 * rng.standard_normal(len(t))


@pytest.mark.parametrize("fs,mode", [(8000, "nb"), (16000, "wb"), (8000, "wb")])
def test_pesq_and_stoi_rank_quality(fs, mode):
    rng = np.random.default_rng(0)
    ref = _speech_like(fs, 3.0, rng)
    clean_est = ref + 0.01 * rng.standard_normal(len(ref))
    noisy_est = ref + 0.3 * rng.standard_normal(len(ref))
    good, why = pesq_score(clean_est, ref, fs, mode)
    bad, _ = pesq_score(noisy_est, ref, fs, mode)
    assert why is None and 1.0 <= bad < good <= 4.7
    for extended in (True, False):
        s_good, why = stoi_score(clean_est, ref, fs, extended)
        s_bad, _ = stoi_score(noisy_est, ref, fs, extended)
        assert why is None and s_bad < s_good


def test_pesq_and_stoi_report_missing_on_silence():
    fs = 8000
    silence = np.zeros(fs * 2)
    value, why = pesq_score(silence, silence, fs, "nb")
    assert value is None and "silent" in why
    short = np.random.default_rng(0).standard_normal(fs // 20)
    value, why = pesq_score(short, short, fs, "nb")
    assert value is None and "BufferTooShort" in why
    click = np.zeros(fs * 2)
    click[1000] = 1.0  # not all zeros, but pystoi finds too few active frames
    value, why = stoi_score(click, click, fs)
    assert value is None and "not enough non-silent frames" in why
    value, why = stoi_score(silence, silence, fs)
    assert value is None and "estoi" in why and "silent" in why
    value, why = stoi_score(np.ones(100), np.ones(100), fs, extended=False)
    assert value is None and why.startswith("stoi") and "too short" in why


def test_default_pesq_mode():
    assert default_pesq_mode(8000) == "nb"
    assert default_pesq_mode(16000) == "wb"
    with pytest.raises(ValueError):
        pesq_score(np.zeros(10), np.zeros(10), 8000, "xx")

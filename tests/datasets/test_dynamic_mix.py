"""Dynamic mixing (datasets/dynamic_mix.py) on a tiny WSJ0-layout corpus of tones."""

import numpy as np
import pytest
import torch

from datasets.audio import random_colour
from datasets.dynamic_mix import DynamicMix, speakers_in_name
from datasets.wsj0_mix import WSJ0Mix
from tests.datasets.corpora import write_wav

FS = 8000
# speaker -> tone frequency; items pair them as WSJ0-style names
FREQS = {"spka": 300.0, "spkb": 700.0, "spkc": 1100.0, "spkd": 1900.0, "spke": 2700.0}


def make_corpus(root, pairs, length=6000, freqs=FREQS, fs=FS):
    base = root / "2speakers" / f"wav{fs // 1000}k" / "min" / "tr"
    t = np.arange(length) / fs
    for i, (a, b) in enumerate(pairs):
        name = f"{a}-tr{i:05d}s1_0.0000_{b}-tr{i:05d}s2_-1.0000"
        srcs = [0.1 * np.sin(2 * np.pi * freqs[s] * t + i) for s in (a, b)]
        for k, x in enumerate(srcs):
            write_wav(base / f"s{k + 1}" / f"{name}.wav", x.astype(np.float32), fs)
        write_wav(base / "mix" / f"{name}.wav", (srcs[0] + srcs[1]).astype(np.float32), fs)
    return root


PAIRS = [("spka", "spkb"), ("spkc", "spkd"), ("spke", "spka"), ("spkb", "spkc")]


@pytest.fixture
def corpus(tmp_path):
    make_corpus(tmp_path, PAIRS)
    return WSJ0Mix(tmp_path, 2, FS, "min", "tr", max_len_s=0.5)


def test_speakers_in_name():
    assert speakers_in_name("klettres.he-tt00001s1_0.0000_filletscs.sp-tt00001s2_-0.6220") == [
        "klettres.he", "filletscs.sp"]
    assert speakers_in_name("01aa010b_0.97482_209a010p_-0.97482") == ["01a", "209"]


def dominant(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spec) * FS / x.size


def speakers_of(srcs, tones):
    """The speaker of each source, told by its tone (within 10 Hz of the speaker's)."""
    found = []
    for x in srcs.numpy():
        f = dominant(x)
        who = min(tones, key=lambda s: abs(tones[s] - f))
        assert abs(tones[who] - f) < 10
        found.append(who)
    return found


def test_remixes_sum_to_the_mixture_with_distinct_speakers_and_wsj_levels(corpus):
    ds = DynamicMix(corpus, gain_db=(-3.0, 3.0))
    torch.manual_seed(0)
    seen = set()
    for draw in range(60):
        mix, srcs = ds[draw % len(ds)]
        assert mix.shape == (1, 4000) and srcs.shape == (2, 4000)
        assert torch.allclose(mix[0], srcs.sum(0), atol=1e-6)
        found = speakers_of(srcs, FREQS)
        assert found[0] != found[1]
        seen.add(frozenset(found))
        rms = srcs.pow(2).mean(1).sqrt()
        rel_db = 20 * torch.log10(rms.min() / rms.max())
        assert -5.0 - 1e-3 <= float(rel_db) <= 0.0
        loud_db = 20 * np.log10(float(rms.max()))
        assert -25 - 3 - 0.01 <= loud_db <= -25 + 3 + 0.01
    assert len(seen) >= 7  # far more pairs than the corpus's four


def test_names_without_speakers_still_remix(tmp_path):
    from tests.datasets.corpora import make_wsj0

    make_wsj0(tmp_path)  # names utt00, utt01, ...: the speakers are unknown
    ds = DynamicMix(WSJ0Mix(tmp_path, 2, FS, "min", "tr", max_len_s=0.1))
    torch.manual_seed(0)
    mix, srcs = ds[0]
    assert srcs.shape == (2, 800) and torch.allclose(mix[0], srcs.sum(0), atol=1e-6)


def test_p_zero_returns_the_corpus_items(corpus):
    ds = DynamicMix(corpus, p=0.0)
    torch.manual_seed(3)
    mix, srcs = ds[1]
    torch.manual_seed(3)
    torch.rand(())  # the draw that decided "no remix"
    mix2, srcs2 = corpus[1]
    assert torch.equal(mix, mix2) and torch.equal(srcs, srcs2)


def test_speed_perturbation_scales_every_frequency(corpus):
    # a tone of f Hz played 1.2 times faster is a tone of 1.2 f Hz, over the same crop length
    ds = DynamicMix(corpus, speed=(1.2, 1.2))
    torch.manual_seed(0)
    for draw in range(12):
        mix, srcs = ds[draw % len(ds)]
        assert srcs.shape == (2, 4000) and torch.allclose(mix[0], srcs.sum(0), atol=1e-6)
        for x in srcs.numpy():
            f = dominant(x)
            assert min(abs(1.2 * g - f) for g in FREQS.values()) < 10, f
    slow = DynamicMix(corpus, speed=(0.8, 0.8))
    f = dominant(slow[0][1][0].numpy())
    assert min(abs(0.8 * g - f) for g in FREQS.values()) < 10, f


def test_colouring_is_a_bounded_zero_phase_response(corpus):
    ds = DynamicMix(corpus, eq_db=6.0)
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    for _ in range(20):
        x = rng.standard_normal(4000)
        ratio = np.fft.rfft(random_colour(x, ds.eq_db, ds.eq_bands)) / np.fft.rfft(x)
        assert np.allclose(ratio.imag, 0.0, atol=1e-9)  # no phase change
        gain_db = 20 * np.log10(ratio.real)
        assert np.all(np.abs(gain_db) <= 6.0 + 1e-9)
        assert np.ptp(gain_db) > 0.1  # it does colour
    mix, srcs = ds[0]
    assert torch.allclose(mix[0], srcs.sum(0), atol=1e-6)


def test_options_are_checked(tmp_path):
    make_corpus(tmp_path, PAIRS)
    with pytest.raises(ValueError, match="max_len_s"):
        DynamicMix(WSJ0Mix(tmp_path, 2, FS, "min", "tr"))
    with pytest.raises(ValueError, match="p must be"):
        DynamicMix(WSJ0Mix(tmp_path, 2, FS, "min", "tr", max_len_s=0.5), p=1.5)
    with pytest.raises(ValueError, match="speed must be"):
        DynamicMix(WSJ0Mix(tmp_path, 2, FS, "min", "tr", max_len_s=0.5), speed=(1.1, 0.9))
    with pytest.raises(ValueError, match="eq_db"):
        DynamicMix(WSJ0Mix(tmp_path, 2, FS, "min", "tr", max_len_s=0.5), eq_db=-1.0)


# The extra corpus's speakers bear the main corpus's names but are other voices (tones).
EXTRA_FREQS = {"spka": 450.0, "spkb": 1500.0, "spkc": 2300.0}


def test_extra_corpus_lends_sources_with_probability_extra_p(tmp_path, corpus):
    make_corpus(tmp_path / "gen", [("spka", "spkb"), ("spkc", "spka")], freqs=EXTRA_FREQS)
    extra = WSJ0Mix(tmp_path / "gen", 2, FS, "min", "tr", max_len_s=0.5)
    tones = {**{f"main {s}": f for s, f in FREQS.items()},
             **{f"extra {s}": f for s, f in EXTRA_FREQS.items()}}
    ds = DynamicMix(corpus, extra=extra, extra_p=0.3)
    torch.manual_seed(0)
    n, from_extra, kinds = 200, 0, set()
    for draw in range(n):
        mix, srcs = ds[draw % len(ds)]
        assert torch.allclose(mix[0], srcs.sum(0), atol=1e-6)
        found = speakers_of(srcs, tones)
        assert found[0] != found[1]  # same name in two corpora is two speakers, allowed
        from_extra += sum(w.startswith("extra") for w in found)
        kinds.add(sum(w.startswith("extra") for w in found))
    # 400 sources, Binomial(400, 0.3): mean 120, sd 9.2; 5 sd either side
    assert 120 - 46 < from_extra < 120 + 46
    assert kinds == {0, 1, 2}
    only = DynamicMix(corpus, extra=extra, extra_p=1.0)
    for draw in range(10):
        speakers_of(only[draw % len(only)][1], EXTRA_FREQS)  # every source an extra tone


def test_extra_corpus_is_opened_only_when_used_and_checked(tmp_path, corpus):
    def missing():
        raise AssertionError("opened although extra_p is 0")

    assert DynamicMix(corpus, extra=missing, extra_p=0.0).extra is None
    with pytest.raises(ValueError, match="extra_p > 0 needs an extra corpus"):
        DynamicMix(corpus, extra_p=0.5)
    with pytest.raises(ValueError, match="extra_p must be"):
        DynamicMix(corpus, extra=corpus, extra_p=-0.1)
    make_corpus(tmp_path / "gen16", [("spka", "spkb")], length=12000, freqs=EXTRA_FREQS,
                fs=16000)
    other_rate = WSJ0Mix(tmp_path / "gen16", 2, 16000, "min", "tr", max_len_s=0.5)
    with pytest.raises(ValueError, match="16000 Hz, the main one at 8000 Hz"):
        DynamicMix(corpus, extra=lambda: other_rate, extra_p=0.5)


def test_room_response_decays_60_db_in_rt60_with_the_asked_drr():
    from datasets.audio import room_response

    torch.manual_seed(0)
    rt60, drr = 0.4, 6.0
    irs = np.stack([room_response(FS, rt60, drr) for _ in range(200)])
    assert irs.shape == (200, int(rt60 * FS)) and np.all(irs[:, 0] == 1.0)
    tail = irs[:, 1:]
    assert np.allclose(10 * np.log10(1.0 / np.sum(tail**2, axis=1)), drr)
    # Monte-Carlo envelope: mean energy in 20-ms windows falls 60 dB per rt60
    w = FS // 50
    start = int(0.002 * FS)
    frames = (irs[:, start : start + w * 15] ** 2).reshape(200, 15, w).mean(axis=(0, 2))
    slope = np.polyfit(np.arange(15) * w / FS, 10 * np.log10(frames), 1)[0]
    assert abs(slope - (-60 / rt60)) < 0.05 * 60 / rt60, slope


def test_reverb_convolves_each_source_with_its_own_room_response(corpus, monkeypatch):
    import datasets.dynamic_mix as dm

    dry = DynamicMix(corpus)
    wet = DynamicMix(corpus, reverb_p=1.0, rt60=(0.3, 0.3), drr_db=(3.0, 3.0))
    irs = []

    def recorded(fs, rt60, drr_db):
        ir = real(fs, rt60, drr_db)
        irs.append(ir)
        return ir

    real = dm.room_response
    monkeypatch.setattr(dm, "room_response", recorded)
    # the same draws up to the room: a dry item, then the reverberant one from that state
    src = np.stack([np.sin(2 * np.pi * 440 * np.arange(4000) / FS), np.zeros(4000)])
    src[1, 100] = 1.0  # a click: its reverberant version is the response itself
    out = wet.reverberate(src)
    assert len(irs) == 2 and np.isclose(wet.rt60[0], 0.3)
    assert np.allclose(out[1, 100 : 100 + len(irs[1])], irs[1], atol=1e-9)
    assert np.allclose(out[0], np.convolve(src[0], irs[0])[:4000], atol=1e-9)
    torch.manual_seed(3)
    mix, srcs = wet[0]
    assert torch.allclose(mix[0], srcs.sum(0), atol=1e-6)
    torch.manual_seed(3)
    mix_dry, _ = dry[0]
    assert not torch.allclose(mix, mix_dry, atol=1e-3)


def test_reverb_options_are_checked(corpus):
    with pytest.raises(ValueError, match="reverb_p"):
        DynamicMix(corpus, reverb_p=2.0)
    with pytest.raises(ValueError, match="rt60"):
        DynamicMix(corpus, reverb_p=0.5, rt60=(0.0, 0.5))
    with pytest.raises(ValueError, match="drr_db"):
        DynamicMix(corpus, reverb_p=0.5, drr_db=(10.0, 0.0))

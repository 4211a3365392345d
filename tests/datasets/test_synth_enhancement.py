"""The synthetic VCTK-DEMAND corpus and its noise generators."""

import json

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from datasets.synth import noise as nz
from datasets.synth.vctk_corpus import SNRS, generate_vctk_demand

FS = 16000
SIZES = {"train": 6, "test": 4}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("VCTK_DEMAND")
    generate_vctk_demand(out, SIZES, seed=0, words=(2, 3), max_seconds=1.5, progress=False)
    return out


def _band_db(x, lo, hi):
    f, p = signal.welch(x, FS, nperseg=4096)
    return 10 * np.log10(np.mean(p[(f >= lo) & (f < hi)]))


def test_noise_types_enough_and_disjoint():
    assert len(nz.NOISE_TYPES) >= 8
    assert not set(nz.TRAIN_NOISES) & set(nz.TEST_NOISES)
    assert set(nz.TRAIN_NOISES) | set(nz.TEST_NOISES) == set(nz.NOISE_TYPES)
    with pytest.raises(ValueError):
        generate_vctk_demand("unused", SIZES, train_noises=["white"], test_noises=["white"])


def test_noise_generators_have_their_spectra():
    rng = np.random.default_rng(0)
    x = {name: gen(rng, 4 * FS, FS) for name, gen in nz.GENERATORS.items()}
    for name, v in x.items():
        assert v.shape == (4 * FS,) and np.all(np.isfinite(v)) and v.std() > 0, name
    # 1/f^a spectra: about 10 a dB per decade between 100-200 Hz and 1-2 kHz
    for name, slope in (("white", 0), ("pink", 10), ("brown", 20)):
        drop = _band_db(x[name], 100, 200) - _band_db(x[name], 1000, 2000)
        assert drop == pytest.approx(slope, abs=1.5), name
    f, p = signal.welch(x["hum"], FS, nperseg=8192)
    assert min(abs(f[np.argmax(p)] / h - 50) for h in range(1, 10)) < 3 or min(
        abs(f[np.argmax(p)] / h - 60) for h in range(1, 10)
    ) < 3
    assert _band_db(x["traffic"], 50, 200) - _band_db(x["traffic"], 3000, 6000) > 30
    env = np.abs(signal.hilbert(x["beeps"]))
    assert np.percentile(env, 95) > 10 * np.percentile(env, 20)  # on/off tones


def test_noisy_is_clean_plus_noise_at_listed_snr(corpus):
    meta = json.loads((corpus / "manifest.json").read_text())
    for split, n in SIZES.items():
        assert len(meta["items"][split]) == n
        for item in meta["items"][split]:
            clean, fs = sf.read(str(corpus / split / "clean" / f"{item['name']}.wav"),
                                dtype="float32")  # fmt: skip
            noisy, _ = sf.read(str(corpus / split / "noisy" / f"{item['name']}.wav"),
                               dtype="float32")  # fmt: skip
            assert fs == FS and clean.shape == noisy.shape and abs(clean.size - 1.5 * FS) < 2
            noise = noisy.astype(np.float64) - clean
            snr = 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2))
            assert snr == pytest.approx(item["snr_db"], abs=0.02)
            assert item["snr_db"] in SNRS[split]
            assert item["noise"] in meta["noise_types"][split]
            assert np.abs(noisy).max() <= 0.95 + 1e-6


def test_speakers_and_noises_disjoint_between_splits(corpus):
    meta = json.loads((corpus / "manifest.json").read_text())
    spk = {s: {it["utterance"]["speaker"] for it in meta["items"][s]} for s in SIZES}
    noise = {s: {it["noise"] for it in meta["items"][s]} for s in SIZES}
    assert not spk["train"] & spk["test"] and not noise["train"] & noise["test"]
    for s in SIZES:  # the file name starts with the speaker id, as VoiceBank's p232_001
        assert all(it["name"].split("_")[0] == it["utterance"]["speaker"]
                   for it in meta["items"][s])  # fmt: skip


def test_deterministic_and_loader(corpus, tmp_path):
    generate_vctk_demand(tmp_path, {"test": 2}, seed=0, words=(2, 3), max_seconds=1.5,
                         progress=False)  # fmt: skip
    for p in (tmp_path / "test" / "noisy").iterdir():
        assert p.read_bytes() == (corpus / "test" / "noisy" / p.name).read_bytes()
    vctk = pytest.importorskip("datasets.vctk_demand")
    ds = vctk.VCTKDemand(corpus, split="test", fs=FS)
    assert len(ds) == SIZES["test"]
    mix, tgt = ds[0]
    assert tgt.shape[0] == 2 and float((mix[0] - tgt.sum(0)).abs().max()) < 1e-6

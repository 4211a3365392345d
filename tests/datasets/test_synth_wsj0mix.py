"""The synthetic WSJ0-mix corpus: layout, sums, levels, speakers, determinism, loader."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datasets.synth.wsj0mix_corpus import MAX_REL_DB, generate_wsj0mix

SIZES = {"tr": 3, "cv": 2, "tt": 2}
ARGS = dict(fs=(8000, 16000), cuts=("min", "max"), sizes=SIZES, words=(2, 3), progress=False)


def _read(path):
    x, _ = sf.read(str(path), dtype="float32")
    return x


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("wsj0_mix")
    generate_wsj0mix(out, 2, seed=0, **ARGS)
    return out / "2speakers"


def test_layout_and_same_names(corpus):
    for fs in ("wav8k", "wav16k"):
        for cut in ("min", "max"):
            for split, n in SIZES.items():
                base = corpus / fs / cut / split
                names = [sorted(p.name for p in (base / d).iterdir()) for d in ("mix", "s1", "s2")]
                assert len(names[0]) == n and names[0] == names[1] == names[2]
    assert sf.info(str(next((corpus / "wav16k/max/tr/mix").iterdir()))).samplerate == 16000


def test_mixture_is_sum_and_cuts(corpus):
    for mix_path in (corpus / "wav8k/max/tt/mix").iterdir():
        mx = {c: _read(corpus / f"wav8k/{c}/tt/mix" / mix_path.name) for c in ("min", "max")}
        src = {c: [_read(corpus / f"wav8k/{c}/tt/s{k}" / mix_path.name) for k in (1, 2)]
               for c in ("min", "max")}  # fmt: skip
        for c in ("min", "max"):
            np.testing.assert_array_equal(mx[c], src[c][0] + src[c][1])
            assert np.abs(mx[c]).max() <= 0.9 + 1e-6
        # zeros only come from padding: the noise floor fills every utterance
        lengths = [np.flatnonzero(s).max() + 1 for s in src["max"]]
        assert mx["max"].size == max(lengths) and mx["min"].size == min(lengths)
        np.testing.assert_array_equal(mx["min"], mx["max"][: mx["min"].size])


def test_relative_levels_measured_from_files(corpus):
    meta = json.loads((corpus / "manifest.json").read_text())
    rel = []
    for split in SIZES:
        for item in meta["items"][split]:
            for fs in ("wav8k", "wav16k"):
                srcs = [_read(corpus / fs / "max" / split / f"s{k}" / f"{item['name']}.wav")
                        for k in (1, 2)]  # fmt: skip
                powers = [np.mean(s[: np.flatnonzero(s).max() + 1].astype(np.float64) ** 2)
                          for s in srcs]  # fmt: skip
                measured = 10 * np.log10(powers[1] / powers[0])
                assert measured == pytest.approx(item["levels_db"][1], abs=0.01)
                rel.append(measured)
    assert -MAX_REL_DB - 0.01 <= min(rel) and max(rel) <= 0.01
    assert np.std(rel) > 0.3  # levels are drawn, not constant


def test_speakers_disjoint_across_splits(corpus):
    meta = json.loads((corpus / "manifest.json").read_text())
    spk = {s: {u["speaker"] for it in meta["items"][s] for u in it["utterances"]} for s in SIZES}
    assert not spk["tr"] & spk["cv"] and not spk["tr"] & spk["tt"] and not spk["cv"] & spk["tt"]
    for items in meta["items"].values():
        for it in items:
            assert len({u["speaker"] for u in it["utterances"]}) == 2


def test_same_seed_same_bytes_other_seed_differs(corpus, tmp_path):
    generate_wsj0mix(tmp_path / "a", 2, seed=0, workers=2, **ARGS)
    assert _files(tmp_path / "a" / "2speakers") == _files(corpus)
    small = dict(ARGS, sizes={"tt": 1}, fs=(8000,), cuts=("max",))
    generate_wsj0mix(tmp_path / "b", 2, seed=1, **small)
    generate_wsj0mix(tmp_path / "c", 2, seed=0, **small)
    b, c = (_files(tmp_path / d / "2speakers") for d in ("b", "c"))
    assert set(b) != set(c)  # names carry speakers and levels
    full = _files(corpus)
    wavs = [k for k in c if k.endswith(".wav")]
    assert len(wavs) == 3 and all(c[k] == full[k] for k in wavs)  # partial = same bytes


def test_rerun_is_idempotent_and_guards_other_params(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*.wav")}
    generate_wsj0mix(corpus.parent, 2, seed=0, **ARGS)
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*.wav")} == before
    with pytest.raises(FileExistsError):
        generate_wsj0mix(corpus.parent, 2, seed=5, **ARGS)


def test_three_speakers_and_loader(corpus, tmp_path):
    wsj0_mix = pytest.importorskip("datasets.wsj0_mix")
    generate_wsj0mix(tmp_path, 3, fs=(8000,), cuts=("max",), sizes={"cv": 1}, words=(2, 2),
                     progress=False)  # fmt: skip
    ds = wsj0_mix.WSJ0Mix(tmp_path, n_sources=3, fs=8000, cut="max", split="cv", check_sum=True)
    mix, tgt = ds[0]
    assert tuple(tgt.shape)[0] == 3 and mix.shape[-1] == tgt.shape[-1]
    assert float((mix[0] - tgt.sum(0)).abs().max()) < 1e-6
    ds2 = wsj0_mix.WSJ0Mix(corpus.parent, n_sources=2, fs=16000, cut="min", split="tr")
    assert len(ds2) == SIZES["tr"] and ds2.source_names == ["s1", "s2"]
    mix, tgt = ds2[1]
    assert float((mix[0] - tgt.sum(0)).abs().max()) < 1e-6

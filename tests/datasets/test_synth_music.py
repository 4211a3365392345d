"""The synthetic MUSDB18-HQ corpus: stems, mixture, names, determinism, loader."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from datasets.synth.composition import compose
from datasets.synth.musdb_corpus import STEMS, generate_musdb, track_name

DURATION = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("musdb18hq")
    generate_musdb(out, {"train": 2, "test": 1}, n_valid=1, duration=DURATION, progress=False)
    return out


def test_composition_is_within_duration_and_in_range():
    comp = compose(np.random.default_rng(3), 8.0)
    assert 80 <= comp["tempo"] <= 150 and set(comp["stems"]) == set(STEMS)
    for name, stem in comp["stems"].items():
        notes = np.array(stem["notes"])
        assert len(notes) > 0, name
        assert notes[:, 0].min() >= 0 and notes[:, 0].max() < 8.0 + 60 / comp["tempo"] * 4
        assert notes[:, 2].min() >= 24 and notes[:, 2].max() <= 100
    assert comp["stems"]["drums"]["drums"] and not comp["stems"]["vocals"]["drums"]


def test_stems_non_silent_and_mixture_is_their_sum(corpus):
    tracks = sorted((corpus / "train").iterdir()) + sorted((corpus / "test").iterdir())
    assert len(tracks) == 3
    for track in tracks:
        assert re.fullmatch(r"Synth \d{3} - \w+ \w+", track.name)
        stems = {}
        for s in (*STEMS, "mixture"):
            x, fs = sf.read(str(track / f"{s}.wav"), dtype="float32")
            assert fs == 44100 and x.shape == (int(DURATION * fs), 2)
            stems[s] = x
        for s in STEMS:
            assert np.sqrt(np.mean(stems[s] ** 2)) > 1e-3, (track.name, s)
            assert np.abs(stems[s][:, 0] - stems[s][:, 1]).max() > 0  # really stereo
        total = ((stems["drums"] + stems["bass"]) + stems["other"]) + stems["vocals"]
        np.testing.assert_array_equal(stems["mixture"], total)
        assert np.abs(stems["mixture"]).max() <= 0.9 + 1e-6


def test_manifest_valid_tracks_and_names_stable(corpus):
    meta = json.loads((corpus / "manifest.json").read_text())
    assert meta["valid_tracks"] == [track_name("train", 0)]
    assert [it["name"] for it in meta["items"]["test"]] == [track_name("test", 0)]
    assert track_name("train", 0) != track_name("test", 0)
    assert all(set(it["stems"]) == set(STEMS) for it in meta["items"]["train"])


def test_same_seed_same_bytes_other_seed_differs(corpus, tmp_path):
    generate_musdb(tmp_path / "a", {"train": 0, "test": 1}, n_valid=0, duration=DURATION,
                   seed=0, progress=False)  # fmt: skip
    generate_musdb(tmp_path / "b", {"train": 0, "test": 1}, n_valid=0, duration=DURATION,
                   seed=1, progress=False)  # fmt: skip
    name = track_name("test", 0)
    same = (tmp_path / "a" / "test" / name / "mixture.wav").read_bytes()
    assert same == (corpus / "test" / name / "mixture.wav").read_bytes()
    assert same != (tmp_path / "b" / "test" / name / "mixture.wav").read_bytes()


def test_loader_reads_splits(corpus):
    musdb = pytest.importorskip("datasets.musdb")
    valid = musdb.MUSDB18HQ(corpus, split="valid", valid_tracks="manifest", check_mixture=True)
    train = musdb.MUSDB18HQ(corpus, split="train", valid_tracks="manifest")
    assert valid.names == [track_name("train", 0)] and train.names == [track_name("train", 1)]
    mix, tgt = musdb.MUSDB18HQ(corpus, split="test")[0]
    assert tgt.shape[0] == 4 and float((mix[0] - tgt.sum(0)).abs().max()) < 1e-5

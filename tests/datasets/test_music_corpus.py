"""The rendered music corpus (datasets.music) on fake soundfont packages (no network).

The two Debian packages are real .deb files built with dpkg-deb; each holds TimGM6mb
under the file name of the real package's soundfont, so rendering works offline.
The pieces are real music21 corpus files (music21 ships them).
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datasets.music import corpus as mc
from datasets.music.__main__ import main as music_main
from datasets.music.pieces import arrange_piece, corpus_pieces, coverage, read_piece
from datasets.music.soundfonts import SOUNDFONTS, TEST_SOUNDFONT, TRAIN_SOUNDFONTS
from datasets.synth.composition import HAT, KICK, SNARE, drum_part
from datasets.synth.music import soundfont_path
from datasets.voices.packages import PackageError
from tests.datasets.test_voices import build_deb

STEMS = ("drums", "bass", "other", "vocals")
DURATION = 5.0


def build_soundfont_deb(work: Path, name: str, file: str, debs: Path) -> None:
    root = work / f"{name}-root"
    target = root / "usr" / "share" / "sounds" / "sf2" / file
    target.parent.mkdir(parents=True)
    shutil.copy(soundfont_path(), target)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: test <t@example.org>\nDescription: fake soundfont\n")
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(root),
                    str(debs / f"{name}_1.0-1_all.deb")], check=True, capture_output=True)


@pytest.fixture(scope="module")
def fake_cache(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    work = tmp_path_factory.mktemp("sf")
    for sf2 in SOUNDFONTS.values():
        if sf2.package:
            build_soundfont_deb(work, sf2.package, sf2.file, work / "cache" / "debs")
    return work / "cache"


@pytest.fixture(scope="module")
def pieces():
    bach = [p for p in corpus_pieces() if "/bach/" in p]
    return bach[:12]


@pytest.fixture(scope="module")
def corpus(fake_cache, pieces, tmp_path_factory):
    out = tmp_path_factory.mktemp("music") / "corpus"
    used = {}
    real = mc.render_track

    def spy(comp, seconds, rng, soundfont=None, dry=None):
        used[len(used)] = soundfont
        return real(comp, seconds, rng, soundfont=soundfont, dry=dry)

    mc.render_track = spy
    try:
        path = mc.generate_music(out, {"train": 4, "test": 2}, n_valid=1, duration=DURATION,
                                 piece_share=0.5, cache=fake_cache, progress=False,
                                 pieces=pieces)  # fmt: skip
    finally:
        mc.render_track = real
    return out, json.loads(path.read_text()), used


def test_layout_sum_and_manifest(corpus):
    out, manifest, _ = corpus
    assert manifest["generator"] == "datasets.music" and manifest["sample_rate"] == 44100
    names = {s: [it["name"] for it in manifest["items"][s]] for s in ("train", "test")}
    assert manifest["valid_tracks"] == names["train"][:1]
    for split in ("train", "test"):
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(names[split])
        for item in manifest["items"][split]:
            x = {s: sf.read(str(out / split / item["name"] / f"{s}.wav"), dtype="float32")
                 for s in (*STEMS, "mixture")}  # fmt: skip
            assert all(fs == 44100 and a.ndim == 2 and a.shape[1] == 2 for a, fs in x.values())
            assert x["mixture"][0].shape[0] == round(item["seconds"] * 44100)
            for s in STEMS:
                assert np.sqrt(np.mean(x[s][0] ** 2)) > 1e-3, (item["name"], s)
                a = np.abs(x[s][0])  # round-off below -140 dBFS is exact digital silence
                assert np.all((a == 0) | (a >= mc.SILENCE)), (item["name"], s)
            total = ((x["drums"][0] + x["bass"][0]) + x["other"][0]) + x["vocals"][0]
            np.testing.assert_array_equal(x["mixture"][0], total)
    files = manifest["soundfonts"]["files"]
    assert set(files) == set(SOUNDFONTS) and files["fluidr3"]["package"] == "fluid-soundfont-gm"


def test_test_split_uses_only_the_held_out_soundfont(corpus):
    _, manifest, used = corpus
    assert {it["soundfont"] for it in manifest["items"]["test"]} == {TEST_SOUNDFONT}
    assert {it["soundfont"] for it in manifest["items"]["train"]} <= set(TRAIN_SOUNDFONTS)
    # the renderer really got that file: train + test in order, one call per track
    order = manifest["items"]["train"] + manifest["items"]["test"]
    for i, item in enumerate(order):
        assert Path(used[i]).name == SOUNDFONTS[item["soundfont"]].file


def test_pieces_split_disjoint_and_sources_follow_it(corpus, pieces):
    _, manifest, _ = corpus
    split = mc.split_pieces(sorted(pieces), seed=0)
    assert not set(split["train"]) & set(split["test"])
    assert sorted(split["train"] + split["test"]) == sorted(pieces)
    for s in ("train", "test"):
        for item in manifest["items"][s]:
            if item["source"] != "generated":
                assert any(p.endswith(item["source"]) for p in split[s]), item


def test_arranged_piece_maps_voices_to_stems():
    path = next(p for p in corpus_pieces() if p.endswith("bwv269.mxl"))
    piece = read_piece(path)
    # BWV 269 is a four-part chorale in 3/4
    assert len(piece["voices"]) == 4 and piece["beats"] == 3 and piece["beat_q"] == 1.0
    comp = arrange_piece(piece, np.random.default_rng(0), 8.0)
    by_pitch = sorted(piece["voices"], key=lambda v: np.mean([n[2] for n in v]))
    vocal_keys = {n[2] for n in comp["stems"]["vocals"]["notes"]}
    assert vocal_keys <= {n[2] for n in by_pitch[-1]}  # the soprano
    bass_keys = {n[2] for n in comp["stems"]["bass"]["notes"]}
    assert bass_keys <= {n[2] + d for n in by_pitch[0] for d in (0, -12)}
    assert len(comp["stems"]["other"]["parts"]) == 2  # alto and tenor, own instruments
    for stem in comp["stems"].values():
        for part in stem.get("parts", [stem]):
            starts = [n[0] for n in part["notes"]]
            assert min(starts) >= 0 and max(starts) < 8.0 + 4 * 60 / comp["tempo"]


def test_coverage_counts_overlapping_notes_once():
    voice = [(0.0, 1.0, 60), (0.5, 1.0, 64), (3.0, 2.0, 67)]  # sounds on [0, 1.5) and [3, 5)
    assert coverage(voice, 0.0, 4.0) == pytest.approx(2.5 / 4)
    assert coverage(voice, 1.0, 3.0) == pytest.approx(0.5 / 2)
    assert coverage(voice, 5.0, 8.0) == 0.0


def test_voices_that_rest_through_the_excerpt_are_not_used():
    def line(key, on, off):
        return [(float(q), 1.0, key) for q in range(on, off)]

    # four bars of 4/4; the trumpet (highest) plays only on the first beat
    piece = {"voices": [line(48, 0, 16), line(55, 0, 16), line(64, 0, 16), line(76, 0, 1)],
             "beat_q": 1.0, "beats": 4, "length_q": 16.0}  # fmt: skip
    comp = arrange_piece(piece, np.random.default_rng(0), 2.0)
    assert comp is not None
    assert {n[2] for n in comp["stems"]["vocals"]["notes"]} <= {64}  # not the trumpet
    assert len(comp["stems"]["other"]["parts"]) == 1
    piece["voices"] = piece["voices"][:2] + [line(76, 0, 1)]  # two sounding voices only
    assert all(arrange_piece(piece, np.random.default_rng(i), 2.0) is None for i in range(5))


@pytest.mark.parametrize("beats", [2, 3, 4])
def test_drum_part_follows_the_metre(beats):
    beat = 0.5
    notes = np.array(drum_part(np.random.default_rng(1), 4, beat, beats))
    pos = (notes[:, 0] % (beats * beat)) / beat  # in beats within the bar (jitter +-few ms)
    kicks = pos[notes[:, 2] == KICK]
    snares = pos[notes[:, 2] == SNARE]
    assert np.all(np.abs(kicks - np.round(kicks * 4) / 4) < 0.1)
    assert np.any(np.abs(kicks) < 0.1) or np.any(np.abs(kicks - beats) < 0.1)  # beat one
    if beats != 4:  # the snare on the other beats, never on one
        assert set(np.round(snares[snares < beats - 0.1]).astype(int)) <= set(range(1, beats))
    else:
        assert set(np.round(snares).astype(int)) <= {1, 3}  # backbeat (fills aside)
    assert np.sum(notes[:, 2] == HAT) >= beats * 2
    bar_len = beats * beat
    assert notes[:, 0].max() < 4 * bar_len + 0.05


def test_rerun_resumes_to_the_same_bytes(corpus, fake_cache, pieces):
    out, manifest, _ = corpus
    item = manifest["items"]["train"][1]
    mixture = out / "train" / item["name"] / "mixture.wav"
    before = mixture.read_bytes()
    mixture.unlink()  # as if interrupted before the last file of this track
    mc.generate_music(out, {"train": 4, "test": 2}, n_valid=1, duration=DURATION,
                      piece_share=0.5, cache=fake_cache, progress=False, pieces=pieces)
    assert mixture.read_bytes() == before
    with pytest.raises(FileExistsError, match="other parameters"):
        mc.generate_music(out, {"train": 5, "test": 2}, n_valid=1, duration=DURATION,
                          cache=fake_cache, progress=False, pieces=pieces)


def test_missing_package_is_named_and_nothing_is_written(tmp_path, apt_without_packages):
    with pytest.raises(PackageError, match="apt-get download musescore-general-soundfont"):
        mc.generate_music(tmp_path / "out", {"train": 1, "test": 1}, n_valid=0,
                          cache=tmp_path / "cache", progress=False, pieces=[])
    code = music_main(["--out", str(tmp_path / "out2"), "--cache", str(tmp_path / "c2"),
                       "--no-progress"])
    assert code == 2
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


@pytest.fixture(scope="module")
def voice_cache(fake_cache, tmp_path_factory):
    """klettres-data and ktuberling-data with one steady tone per speaker (110-270 Hz)."""
    work = tmp_path_factory.mktemp("voices")
    freqs = iter(range(110, 280, 20))
    spec = {"klettres-data": {}, "ktuberling-data": {}}
    for lang in ("cs", "de", "fr", "it"):
        f = next(freqs)
        for i in range(3):
            spec["klettres-data"][f"usr/share/klettres/{lang}/syllab/s{i}.ogg"] = f
    for lang in ("ca", "da", "fi", "nl", "sv"):
        f = next(freqs)
        for i in range(3):
            spec["ktuberling-data"][f"usr/share/ktuberling/sounds/{lang}/w{i}.wav"] = f
    for name, files in spec.items():
        build_deb(work, name, files, work / "cache" / "debs")
    return work / "cache"


def test_sung_tracks_take_recorded_voices_and_keep_the_other_stems(
    corpus, fake_cache, voice_cache, pieces, tmp_path
):
    out0, manifest0, _ = corpus
    out = tmp_path / "sung"
    path = mc.generate_music(out, {"train": 4, "test": 2}, n_valid=1, duration=DURATION,
                             piece_share=0.5, cache=fake_cache, progress=False, pieces=pieces,
                             sung_share=1.0, voices_cache=voice_cache)  # fmt: skip
    manifest = json.loads(path.read_text())
    singers = manifest["singers"]
    assert set(singers["packages"]) == {"klettres-data", "ktuberling-data"}
    assert singers["train"] and singers["test"] and not set(singers["train"]) & set(singers["test"])
    assert manifest["params"]["sung_share"] == 1.0 and manifest0["params"]["sung_share"] == 0.0
    for split in ("train", "test"):
        for item, plain in zip(manifest["items"][split], manifest0["items"][split], strict=True):
            assert item["singer"] in singers[split] and plain["singer"] is None
            assert item["name"] == plain["name"]  # the same composition and soundfont
            folder, folder0 = out / split / item["name"], out0 / split / item["name"]
            read = {s: sf.read(folder / f"{s}.wav")[0] for s in STEMS}
            read0 = {s: sf.read(folder0 / f"{s}.wav")[0] for s in STEMS}
            # drums, bass and other are the same signals up to the track's peak gain
            d, d0 = read["drums"].ravel(), read0["drums"].ravel()
            c = float(d @ d0 / (d0 @ d0))
            for s in ("drums", "bass", "other"):
                np.testing.assert_allclose(read[s], c * read0[s], atol=2e-6)
            v, v0 = read["vocals"].ravel(), read0["vocals"].ravel()
            assert np.sqrt(np.mean(v**2)) > 1e-3  # a voice, not silence
            assert abs(v @ v0) / np.sqrt((v @ v) * (v0 @ v0)) < 0.5  # not the voice patch
            mix = sum(read[s] for s in STEMS)
            np.testing.assert_allclose(sf.read(folder / "mixture.wav")[0], mix, atol=1e-5)


def test_sung_share_out_of_range_is_refused(fake_cache, tmp_path):
    with pytest.raises(ValueError, match="sung_share"):
        mc.generate_music(tmp_path / "out", {"train": 1, "test": 1}, n_valid=0,
                          cache=fake_cache, progress=False, pieces=[], sung_share=1.5)
    assert not (tmp_path / "out").exists()

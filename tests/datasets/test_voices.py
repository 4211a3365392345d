"""The recorded-voice corpus builder on fake Debian packages (no network).

The fake packages are real .deb files built with dpkg-deb from small trees in the
four packages' layouts; each speaker is a tone of its own frequency with silence
around every utterance, so speaker identity and trimming can be checked in the output.
"""

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datasets.voices import corpus as vc
from datasets.voices.__main__ import main as voices_main
from datasets.voices.packages import PackageError, prepare_packages, sha256_of
from datasets.voices.speakers import assign_splits, speaker_of
from datasets.wsj0_mix import WSJ0Mix

FS_IN = 16000
UTT_S = 3.0  # seconds of tone per utterance (plus 0.5 s of silence on both sides)

# package -> {relpath: (frequency in Hz, or None for a corrupt file)}
KL = "usr/share/klettres"
KT = "usr/share/ktuberling/sounds"
FC = "usr/share/games/fillets-ng/sound"


def _tree_spec():
    spec = {"klettres-data": {}, "ktuberling-data": {}, "fillets-ng-data-cs": {},
            "fillets-ng-data-nl": {}}  # fmt: skip
    freq = iter(range(200, 4000, 90))
    for lang in ("cs", "de", "en_GB", "fr"):
        f = next(freq)
        for i in range(3):
            spec["klettres-data"][f"{KL}/{lang}/alpha/x{i}.ogg"] = f
    for lang in ("ca", "da", "sr", "de", "fi"):
        f = next(freq)
        for i in range(3):
            spec["ktuberling-data"][f"{KT}/{lang}/w{i}.wav"] = f
    for i in range(3):  # the same recordings under a script variant: one speaker
        spec["ktuberling-data"][f"{KT}/sr@latin/w{i}.wav"] = spec["ktuberling-data"][
            f"{KT}/sr/w{i}.wav"]
    for code, n in (("m", 9), ("v", 9), ("hs", 3), ("c", 3), ("x", 3)):
        f = next(freq)
        for i in range(n):
            spec["fillets-ng-data-cs"][f"{FC}/lvl{i % 2}/cs/lvl{i % 2}-{code}-line{i}.ogg"] = f
    spec["fillets-ng-data-cs"][f"{FC}/lvl0/cs/init-0-1.ogg"] = next(freq)  # no speaker
    spec["fillets-ng-data-cs"][f"{FC}/lvl0/cs/lvl0-m-broken.ogg"] = None  # undecodable
    for code in ("m", "v"):
        f = next(freq)
        for i in range(3):
            spec["fillets-ng-data-nl"][f"{FC}/lvl0/nl/lvl0-{code}-line{i}.ogg"] = f
    return spec


def tone_file(path: Path, freq):
    path.parent.mkdir(parents=True, exist_ok=True)
    if freq is None:
        path.write_bytes(b"OggS" + b"\x00garbage" * 50)
        return
    t = np.arange(int(UTT_S * FS_IN)) / FS_IN
    amp = 0.1 + 0.2 * (zlib.crc32(path.name.encode()) % 1000) / 1000  # distinct files
    x = np.concatenate([np.zeros(FS_IN // 2), amp * np.sin(2 * np.pi * freq * t),
                        np.zeros(FS_IN // 2)])  # fmt: skip
    fmt = "OGG" if path.suffix == ".ogg" else "WAV"
    sf.write(str(path), x, FS_IN, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")


def build_deb(work: Path, name: str, files: dict, debs: Path) -> Path:
    root = work / f"{name}-root"
    for rel, freq in files.items():
        if "sr@latin" in rel:  # written after sr/: a byte-identical duplicate
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / rel.replace("sr@latin", "sr"), root / rel)
        else:
            tone_file(root / rel, freq)
    doc = root / "usr" / "share" / "doc" / name / "copyright"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("Files: *\nLicense: GPL-2+\n")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1:2.0-1\nArchitecture: all\n"
        "Maintainer: test <t@example.org>\nDescription: fake voices\n")
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{name}_1%3a2.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    return deb


@pytest.fixture(scope="module")
def fake_debs(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    work = tmp_path_factory.mktemp("debs")
    debs = work / "debs"
    for name, files in _tree_spec().items():
        build_deb(work, name, files, debs)
    return debs


def make_cache(tmp_path: Path, debs: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(debs, cache / "debs")
    return cache


OPTS = {"sizes": {"tr": 6, "cv": 2, "tt": 2}, "seconds": (1.0, 2.0), "progress": False}


@pytest.fixture(scope="module")
def corpus(fake_debs, tmp_path_factory):
    out = tmp_path_factory.mktemp("voices")
    cache = make_cache(out, fake_debs)
    paths = vc.generate_voices(out / "corpus", n_sources=(2, 3), fs=(8000, 16000),
                               cuts=("min", "max"), cache=cache, **OPTS)  # fmt: skip
    return out / "corpus", cache, paths


def test_speaker_rules():
    assert speaker_of("klettres-data", f"{KL}/en_GB/syllab/ba.ogg") == "klettres.engb"
    assert speaker_of("klettres-data", f"{KL}/en_GB/sounds.xml") is None
    assert speaker_of("ktuberling-data", f"{KT}/sr@ijekavianlatin/x.ogg") == "ktuberling.sr"
    assert speaker_of("fillets-ng-data-cs", f"{FC}/kitchen/cs/kuch-m-hrnec0.ogg") == "filletscs.m"
    assert speaker_of("fillets-ng-data-nl", f"{FC}/hole/nl/l-dejte0.ogg") == "filletsnl.l"
    assert speaker_of("fillets-ng-data-cs", f"{FC}/gods/cs/b1-10.ogg") == "filletscs.b1"
    for rel in (f"{FC}/x/cs/init-0-3.ogg", f"{FC}/fdto/cs/zelena-ted.ogg",
                f"{FC}/x/nl/lvl-m-a.ogg", f"{FC}/linux/cs/1-hello.ogg"):  # fmt: skip
        assert speaker_of("fillets-ng-data-cs", rel) is None, rel
    with pytest.raises(ValueError, match="no speaker rule"):
        speaker_of("other-data", "a.ogg")


def test_splits_are_disjoint_fixed_and_keep_the_leads_in_training():
    secs = {f"fam.{i}": 10.0 for i in range(20)}
    secs.update({"big.m": 1000.0, "big.v": 1000.0, "big.a": 50, "big.b": 50, "big.c": 50})
    splits = assign_splits(secs)
    assert assign_splits(dict(reversed(list(secs.items())))) == splits  # order-free
    allspk = [s for v in splits.values() for s in v]
    assert sorted(allspk) == sorted(secs)  # every speaker exactly once
    fam_tt = [s for s in splits["tt"] if s.startswith("fam.")]
    fam_cv = [s for s in splits["cv"] if s.startswith("fam.")]
    assert (len(fam_tt), len(fam_cv)) == (3, 2)  # 15 % and 10 % of 20
    assert {"big.m", "big.v"} <= set(splits["tr"])  # each > 25 % of its package
    assert any(s.startswith("big.") for s in splits["tt"])


def test_trim_silence_cuts_to_the_sound_with_margins():
    fs = 8000
    x = np.concatenate([np.zeros(4000), 0.5 * np.ones(8000), np.zeros(6000)])
    y = vc.trim_silence(x, fs, margin_s=0.05)
    assert abs(y.size - (8000 + 2 * 400)) <= 2 * int(0.02 * fs)
    assert np.all(y[int(0.05 * fs) + 160: -int(0.05 * fs) - 160] == 0.5)
    assert vc.trim_silence(np.zeros(1000), fs).size == 0


def _speaker_freq(spec):
    out = {}
    for pkg, files in spec.items():
        for rel, f in files.items():
            spk = speaker_of(pkg, rel)
            if spk and f is not None:
                out[spk] = f
    return out


def _dominant_freq(x, fs):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spec) * fs / x.size


def test_corpus_layout_mixing_and_manifest(corpus, fake_debs):
    root, cache, paths = corpus
    assert [p.parent.name for p in paths] == ["2speakers", "3speakers"]
    freqs = _speaker_freq(_tree_spec())
    for k in (2, 3):
        man = json.loads((root / f"{k}speakers" / "manifest.json").read_text())
        assert "status" not in man and man["generator"] == "datasets.voices"
        held = {s: set(v) for s, v in man["speakers"].items()}
        assert not (held["tr"] & held["cv"] or held["tr"] & held["tt"] or held["cv"] & held["tt"])
        assert {"filletscs.m", "filletscs.v"} <= held["tr"]
        assert "ktuberling.sr" in set().union(*held.values())  # sr@latin merged into sr
        assert man["skipped_files"]["undecodable"] == 1
        assert "lvl0-m-broken.ogg" in man["skipped_files"]["undecodable_files"][0]
        assert man["skipped_files"]["duplicates"] == 3
        assert man["skipped_files"]["unidentified"] == 1
        for name, pkg in man["params"]["packages"].items():
            assert pkg["version"] == "1:2.0-1"
            assert pkg["sha256"] == sha256_of(next((cache / "debs").glob(f"{name}_*.deb")))
        assert man["licences"]["klettres-data"] == ["GPL-2+"]
        for split, n in OPTS["sizes"].items():
            items = man["items"][split]
            assert len(items) == n
            for fs in (8000, 16000):
                ds_min = WSJ0Mix(root, k, fs, "min", split, check_sum=True, sum_tol=1e-6)
                ds_max = WSJ0Mix(root, k, fs, "max", split)
                assert len(ds_min) == n
                for i in range(n):
                    mix, tgt = ds_min[i]
                    mix_max, tgt_max = ds_max[i]
                    assert np.allclose(tgt_max[:, : tgt.shape[1]], tgt)  # min = prefix of max
                    assert tgt.shape[1] >= int(0.99 * fs)  # sources of at least 1 s
            for item in items:
                spk = [s["speaker"] for s in item["sources"]]
                assert len(set(spk)) == k and set(spk) <= held[split]
                # each written source is its speaker's tone
                for j, s in enumerate(item["sources"]):
                    x, fs = sf.read(root / f"{k}speakers/wav16k/max/{split}/s{j + 1}"
                                    / f"{item['name']}.wav")  # fmt: skip
                    n = int(s["seconds"] * fs)
                    assert abs(_dominant_freq(x[:n], fs) - freqs[s["speaker"]]) < 5


def test_sources_are_trimmed_and_joined_with_short_pauses(corpus):
    root, _, _ = corpus
    man = json.loads((root / "2speakers" / "manifest.json").read_text())
    item = man["items"]["tr"][0]
    x, fs = sf.read(root / "2speakers/wav8k/max/tr/s1" / f"{item['name']}.wav")
    n = int(item["sources"][0]["seconds"] * fs)
    silent = np.abs(x[:n]) < 1e-3
    # The recordings carry 0.5 s of silence on each side; after trimming, no silent run
    # is longer than the longest pause plus the two 50-ms margins (and filter ringing).
    longest, run = 0, 0
    for s in silent:
        run = run + 1 if s else 0
        longest = max(longest, run)
    assert longest / fs < 0.2 + 0.1 + 0.05
    assert x[:n].size == n and np.sqrt(np.mean(x[:n] ** 2)) > 1e-3


def test_rerun_resumes_to_the_same_bytes_and_refuses_other_options(corpus, fake_debs, tmp_path):
    root, cache, _ = corpus
    out = tmp_path / "copy"
    shutil.copytree(root, out)
    files = sorted(p for p in out.rglob("*.wav"))
    before = {p: p.read_bytes() for p in files}
    # interrupted: the stub manifest and a few missing files
    man = out / "2speakers" / "manifest.json"
    stub = json.loads(man.read_text())
    man.write_text(json.dumps({"generator": stub["generator"], "params": stub["params"],
                               "status": "incomplete"}))  # fmt: skip
    for p in files[::7]:
        p.unlink()
    vc.generate_voices(out, n_sources=(2, 3), fs=(8000, 16000), cuts=("min", "max"),
                       cache=cache, **OPTS)  # fmt: skip
    assert {p: p.read_bytes() for p in sorted(out.rglob("*.wav"))} == before
    assert "status" not in json.loads(man.read_text())
    with pytest.raises(FileExistsError, match="other parameters"):
        vc.generate_voices(out, n_sources=(2,), fs=(8000, 16000), cuts=("min", "max"),
                           cache=cache, **{**OPTS, "seconds": (1.0, 3.0)})  # fmt: skip


def test_missing_package_is_named_with_the_command_and_nothing_is_written(
        tmp_path, apt_without_packages):
    with pytest.raises(PackageError) as err:
        prepare_packages(tmp_path / "cache")
    msg = str(err.value)
    assert "klettres-data" in msg and "apt-get download klettres-data" in msg
    assert "Unable to locate package" in msg
    code = voices_main(["--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert not (tmp_path / "out" / "2speakers").exists()


def test_corrupt_deb_and_wrong_package_are_refused(fake_debs, tmp_path):
    cache = make_cache(tmp_path, fake_debs)
    deb = next((cache / "debs").glob("klettres-data_*.deb"))
    deb.write_bytes(b"not a deb")
    with pytest.raises(PackageError, match="not a readable Debian package"):
        prepare_packages(cache)
    shutil.copy(next((cache / "debs").glob("ktuberling-data_*.deb")), deb)
    with pytest.raises(PackageError, match="holds the package 'ktuberling-data'"):
        prepare_packages(cache)


def test_unpacking_leaves_no_partial_tree(fake_debs, tmp_path):
    cache = make_cache(tmp_path, fake_debs)
    stale = cache / "trees" / ".klettres-data_1%3a2.0-1.partial123"
    stale.mkdir(parents=True)
    pkgs = prepare_packages(cache)
    assert not stale.exists()
    assert sorted(p.name for p in (cache / "trees").iterdir()) == sorted(
        p.tree.name for p in pkgs.values())

"""Tiny corpora in the exact on-disk layouts, written with soundfile (test helpers).

Sources are ramps plus a per-file offset, so a crop can be located exactly by
its first sample (`ramp_start`) and checked for contiguity.
"""

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SLOPE = 1e-5  # ramp increment per sample; keeps |x| < 1 for files up to ~40k samples


def write_wav(path: Path, x: np.ndarray, fs: int, subtype: str = "FLOAT") -> None:
    """Write x of shape (L,) or (C, L)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.T if x.ndim == 2 else x, fs, subtype=subtype)


def ramp(length: int, k: int, offset: float) -> np.ndarray:
    """Source k: a ramp with its own sign and slope, shifted by `offset`."""
    sign = 1.0 if k % 2 == 0 else -1.0
    return (offset + sign * SLOPE * (k + 1) * np.arange(length)).astype(np.float32)


def ramp_start(x: np.ndarray, k: int, offset: float) -> int:
    """Sample index where a crop of `ramp(.., k, offset)` starts."""
    sign = 1.0 if k % 2 == 0 else -1.0
    return int(round((float(x[0]) - offset) / (sign * SLOPE * (k + 1))))


def offset_of(i: int) -> float:
    return 0.01 * (i + 1)


def make_parallel(
    base: Path,
    lengths: list[int],
    n_sources: int,
    fs: int,
    mix_dirs=("mix",),
    noise_dir: str | None = None,
    noisy_mix_dir: str | None = None,
) -> list[str]:
    """Write utt{i} into `mix_dirs` (sum of sources) and s1..sK (+ noise)."""
    names = []
    for i, length in enumerate(lengths):
        name = f"utt{i:02d}"
        srcs = np.stack([ramp(length, k, offset_of(i)) for k in range(n_sources)])
        for k in range(n_sources):
            write_wav(base / f"s{k + 1}" / f"{name}.wav", srcs[k], fs)
        for d in mix_dirs:
            write_wav(base / d / f"{name}.wav", srcs.sum(0), fs)
        if noise_dir is not None:
            noise = 0.05 * np.sin(0.3 * np.arange(length) + i).astype(np.float32)
            write_wav(base / noise_dir / f"{name}.wav", noise, fs)
            write_wav(base / noisy_mix_dir / f"{name}.wav", srcs.sum(0) + noise, fs)
        names.append(name)
    return names


WSJ_LENGTHS = {"tr": [4000, 3000, 1500, 3500], "cv": [2000, 2500], "tt": [1800, 2200]}


def make_wsj0(root: Path, n_sources: int = 2, fs: int = 8000, cut: str = "min") -> Path:
    for split, lengths in WSJ_LENGTHS.items():
        base = root / f"{n_sources}speakers" / f"wav{fs // 1000}k" / cut / split
        make_parallel(base, lengths, n_sources, fs)
    return root


LIBRI_LENGTHS = {"train-100": [3000, 2000, 2600], "dev": [1500, 1700], "test": [1600, 1900]}


def make_librimix(root: Path, n_sources: int = 2, fs: int = 8000, cut: str = "min") -> Path:
    for split, lengths in LIBRI_LENGTHS.items():
        base = root / f"Libri{n_sources}Mix" / f"wav{fs // 1000}k" / cut / split
        make_parallel(
            base, lengths, n_sources, fs, mix_dirs=("mix_clean",), noise_dir="noise",
            noisy_mix_dir="mix_both",
        )
    return root


def vctk_pair(i: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) of file i: a ramp plus a sinusoid of a file-specific frequency."""
    clean = ramp(length, 0, offset_of(i))
    noise = (0.02 * np.sin((0.05 + 0.01 * i) * np.arange(length))).astype(np.float32)
    return clean + noise, clean


def make_vctk(
    root: Path, fs: int = 16000, train_speakers: int = 12, per_speaker: int = 2, length: int = 1600
) -> Path:
    i = 0
    for split, n_spk in (("train", train_speakers), ("test", 2)):
        for s in range(n_spk):
            for u in range(per_speaker):
                name = f"p{200 + s + (100 if split == 'test' else 0)}_{u + 1:03d}"
                n = length + 200 * u  # two lengths per speaker
                noisy, clean = vctk_pair(i, n)
                write_wav(root / split / "noisy" / f"{name}.wav", noisy, fs)
                write_wav(root / split / "clean" / f"{name}.wav", clean, fs)
                i += 1
    return root


MUSDB_STEMS = ["drums", "bass", "other", "vocals"]
MUSDB_TRAIN = ["Leaf - Summerghost", "ANiMAL - Rockshow", "Artist A - Song", "Artist B - Song",
               "Artist C - Song"]
MUSDB_TEST = ["Test X - One", "Test Y - Two"]
MUSDB_LEN = 13230  # 0.3 s at 44.1 kHz


def musdb_stem(t: int, k: int, length: int = MUSDB_LEN) -> np.ndarray:
    """Stereo stem k of track t: left a ramp, right the negated ramp times 0.5."""
    left = ramp(length, k, offset_of(t) * (k + 1) * 0.5)
    return np.stack([left, -0.5 * left])


def make_musdb(root: Path, train=MUSDB_TRAIN, test=MUSDB_TEST, fs: int = 44100) -> Path:
    for split, tracks in (("train", train), ("test", test)):
        for t, track in enumerate(tracks):
            stems = [musdb_stem(t, k) for k in range(4)]
            for k, stem in enumerate(MUSDB_STEMS):
                write_wav(root / split / track / f"{stem}.wav", stems[k], fs)
            write_wav(root / split / track / "mixture.wav", np.sum(stems, axis=0), fs)
    # as written by datasets.synth, for valid_tracks="manifest"
    (root / "manifest.json").write_text(json.dumps({"valid_tracks": list(train[-1:])}))
    return root

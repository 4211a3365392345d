"""Shared audio helpers for the loaders: checked reading, soxr resampling, crops.

Every problem with the data on disk raises `DatasetError` with a message that
names the file (or folder) and what is wrong with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch


class DatasetError(ValueError):
    """Missing, unreadable or inconsistent data; the message names the file."""


@dataclass(frozen=True)
class AudioInfo:
    fs: int
    frames: int
    channels: int


def require_dir(path: str | Path, layout: str) -> Path:
    """Return `path` as a Path, or fail saying which layout was expected."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"missing folder {path}; expected the layout {layout}")
    return path


def require_complete_corpus(root: str | Path, allow_incomplete: bool = False) -> None:
    """Refuse a generated corpus whose `manifest.json` says it is incomplete.

    The generators (`python -m datasets.synth`, `python -m datasets.voices`) write a
    stub manifest with `"status": "incomplete"` first and the full one last, so a
    killed generation is recognisable; real corpora have no manifest and pass.
    """
    import json

    path = Path(root) / "manifest.json"
    if allow_incomplete or not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"unreadable corpus manifest {path}: {e}") from e
    if manifest.get("status") == "incomplete":
        gen = manifest.get("generator", "the generator")
        raise DatasetError(
            f"{Path(root)} is an incomplete generated corpus (its generation was interrupted; "
            f"{path} says so). Complete it by rerunning the same 'python -m {gen} ...' "
            f"command (it resumes; options as stored in the manifest: "
            f"{json.dumps(manifest.get('params'))}), or pass allow_incomplete=true to use "
            "the items that exist")


def list_audio(folder: str | Path, layout: str, ext: str = ".wav") -> list[str]:
    """Sorted file stems of the `ext` files in `folder` (at least one)."""
    folder = require_dir(folder, layout)
    names = sorted(p.stem for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ext)
    if not names:
        raise DatasetError(f"no {ext} files found in {folder}; expected the layout {layout}")
    return names


def require_same_names(names: list[str], folder: str | Path, ext: str = ".wav") -> None:
    """Every `name` must also exist in `folder` (parallel folders of a corpus)."""
    folder = require_dir(folder, "parallel folders with the same file names")
    present = {p.stem for p in folder.iterdir() if p.suffix.lower() == ext}
    missing = [n for n in names if n not in present]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"missing file {folder / (missing[0] + ext)}{more}")


def audio_info(path: str | Path) -> AudioInfo:
    """Header of an audio file; fails on missing, unreadable or empty files."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    try:
        info = sf.info(str(path))
    except RuntimeError as e:  # soundfile's LibsndfileError derives from RuntimeError
        raise DatasetError(f"unreadable audio file {path}: {e}") from e
    if info.frames <= 0:
        raise DatasetError(f"empty audio file {path} (0 samples)")
    return AudioInfo(fs=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


def check_info(
    path: str | Path, info: AudioInfo, fs: int | None = None, channels: int | None = None
) -> None:
    """Fail if the file's rate or channel count differ from what is required."""
    if fs is not None and info.fs != fs:
        raise DatasetError(
            f"sample rate mismatch in {path}: file is {info.fs} Hz, expected {fs} Hz"
        )
    if channels is not None and info.channels != channels:
        raise DatasetError(
            f"wrong number of channels in {path}: file has {info.channels}, expected {channels}"
        )


def read_audio(path: str | Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Read frames [start, stop) as float32 of shape (channels, frames)."""
    try:
        x, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except RuntimeError as e:
        raise DatasetError(f"unreadable audio file {path}: {e}") from e
    if x.shape[0] == 0:
        raise DatasetError(f"empty audio file {path} (no samples in [{start}, {stop}))")
    return np.ascontiguousarray(x.T)


def read_checked(
    path: str | Path, fs: int, resample_ok: bool = False, channels: int | None = 1
) -> np.ndarray:
    """Whole file at rate `fs`, shape (channels, L): resampled only if `resample_ok`."""
    info = audio_info(path)
    check_info(path, info, fs=None if resample_ok else fs, channels=channels)
    return resample(read_audio(path), info.fs, fs)


def resampled_length(n: int, fs_in: int, fs_out: int) -> int:
    """Number of samples of `n` input samples after resampling (rounded)."""
    return int(round(n * fs_out / fs_in))


def resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Resample (C, L) with soxr (high quality); the length is round(L * fs_out / fs_in)."""
    if fs_in == fs_out:
        return x
    y = soxr.resample(np.ascontiguousarray(x.T), fs_in, fs_out, quality="HQ")
    y = np.ascontiguousarray(y.T, dtype=np.float32)
    # soxr may round the length up; fix it so the length rule is exact
    return fit_length(y, resampled_length(x.shape[-1], fs_in, fs_out), mode="zeros")


def fit_length(x: np.ndarray, n: int, mode: str = "zeros") -> np.ndarray:
    """Cut or extend the last axis to `n` samples by zero padding or tiling."""
    length = x.shape[-1]
    if length >= n:
        return x[..., :n]
    if mode == "zeros":
        pad = [(0, 0)] * (x.ndim - 1) + [(0, n - length)]
        return np.pad(x, pad)
    if mode == "tile":
        reps = -(-n // length)
        return np.tile(x, [1] * (x.ndim - 1) + [reps])[..., :n]
    raise ValueError(f"unknown length mode {mode!r}; use 'zeros' or 'tile'")


def random_start(length: int, crop: int) -> int:
    """Uniform crop offset in [0, length - crop], drawn from torch's global RNG.

    torch's RNG is seeded per DataLoader worker and per epoch, so crops differ
    across workers and epochs yet repeat under a fixed seed.
    """
    if length <= crop:
        return 0
    return int(torch.randint(0, length - crop + 1, ()).item())


def uniform(lo: float, hi: float) -> float:
    """U(lo, hi) from torch's RNG (seeded per data-loader worker)."""
    return lo + (hi - lo) * float(torch.rand(()))


def random_colour(x: np.ndarray, eq_db: float, eq_bands: int = 4) -> np.ndarray:
    """`x` (.., L) through a random smooth zero-phase magnitude response of at most `eq_db`.

    The response in dB is a sum of `eq_bands` cosines over the frequency axis (0 to
    Nyquist) with amplitudes U(-1, 1) * eq_db / eq_bands, 0.25 to 2 cycles and a random
    phase: broad tilts and bumps, no phase change.
    """
    spec = np.fft.rfft(x)
    f = np.linspace(0.0, 1.0, spec.shape[-1])
    gain_db = np.zeros_like(f)
    for _ in range(eq_bands):
        amp = uniform(-1.0, 1.0) * eq_db / eq_bands
        cycles, phase = uniform(0.25, 2.0), uniform(0.0, 2 * np.pi)
        gain_db += amp * np.cos(2 * np.pi * cycles * f + phase)
    return np.fft.irfft(spec * 10 ** (gain_db / 20), n=x.shape[-1])


def room_response(fs: int, rt60: float, drr_db: float) -> np.ndarray:
    """A synthetic room impulse response of `rt60` seconds: a unit direct path at sample 0
    and a Gaussian tail from 1 ms on whose envelope falls 60 dB in `rt60` (energy
    exp(-13.8 t / rt60)), scaled so that direct / tail energy is `drr_db` dB (Polack's
    statistical model of late reverberation). Length: `rt60` (the tail is then -60 dB).
    Draws use torch's RNG.
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be > 0, got {rt60}")
    n = max(2, int(round(rt60 * fs)))
    t = np.arange(n) / fs
    tail = torch.randn(n, dtype=torch.float64).numpy() * np.exp(-6.9078 * t / rt60)
    tail[t < 1e-3] = 0.0
    energy = float(np.sum(tail**2))
    ir = tail * np.sqrt(10 ** (-drr_db / 10) / energy) if energy > 0 else tail
    ir[0] = 1.0
    return ir


def check_sum(mix: np.ndarray, srcs: np.ndarray, path: str | Path, atol: float) -> None:
    """Fail if mix (1, L) differs from the sum of srcs (K, L) by more than `atol`."""
    err = float(np.max(np.abs(mix[0] - srcs.sum(axis=0))))
    if err > atol:
        raise DatasetError(
            f"mixture {path} is not the sum of its sources "
            f"(max abs difference {err:.3g} > tolerance {atol:.3g})"
        )


def stable_hash(key: str) -> int:
    """Hash that is the same in every run and process (unlike hash())."""
    return int(hashlib.md5(key.encode("utf-8")).hexdigest()[:12], 16)


def hash_holdout(keys: list[str], fraction: float) -> set[str]:
    """Deterministic held-out subset: the `fraction` of unique keys with smallest hash.

    At least one key is held out and at least one is kept.
    """
    uniq = sorted(set(keys), key=lambda k: (stable_hash(k), k))
    if len(uniq) < 2:
        raise DatasetError(f"cannot hold out a validation subset from {len(uniq)} item(s)")
    n = min(max(1, int(round(fraction * len(uniq)))), len(uniq) - 1)
    return set(uniq[:n])


def to_item(mix: np.ndarray, tgt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(mix (1, L), tgt (K, L)) float32 tensors."""
    mix_t = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))
    tgt_t = torch.from_numpy(np.ascontiguousarray(tgt, dtype=np.float32))
    return mix_t, tgt_t

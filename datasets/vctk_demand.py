"""VoiceBank-DEMAND (VCTK-DEMAND) loader for speech enhancement.

Targets are (clean, noise) with noise = noisy - clean, so the mixture is the
sum of the targets. The validation split is a deterministic held-out part of
the training folder (speakers chosen by a stable hash), excluded from `train`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.audio import (
    DatasetError,
    fit_length,
    hash_holdout,
    list_audio,
    random_start,
    read_checked,
    require_complete_corpus,
    require_dir,
    require_same_names,
    to_item,
)

VCTK_LAYOUT = "{root}/{train,test}/{noisy,clean}/<name>.wav"
SPLITS = ("train", "val", "test")
# with fewer speakers, holding out one whole speaker takes too much of the data
MIN_SPEAKERS = 10


def speaker_of(name: str) -> str:
    """Speaker id of a VoiceBank file name such as "p226_001" (the part before "_")."""
    return name.split("_", 1)[0]


class VCTKDemand(Dataset):
    """Items (noisy (1, L), [clean, noise] (2, L)) from `VCTK_LAYOUT`.

    - `split`: "train" (random crops of `max_len_s`, short files tiled), "val"
      (held-out part of the training folder) or "test" (test folder). On val
      and test, `max_len_s` (if set) crops from the start; None = whole files.
    - `holdout`: "speaker" holds out whole speakers, "file" single files, and
      "auto" speakers when there are at least `MIN_SPEAKERS` of them, files
      otherwise; the `val_fraction` of keys with the smallest stable hash (at
      least one) are held out.
    - `resample`: resample files whose rate differs from `fs` (soxr); when
      False such a file is an error.
    - `noise_augment`: training only; with this probability the clean crop is
      paired with the noise of another random training file, scaled to the
      same noise energy, i.e. the same SNR as the original pair's crop.
    """

    source_names = ["clean", "noise"]
    n_sources = 2

    def __init__(
        self,
        root: str | Path = "data/VCTK_DEMAND",
        split: str = "train",
        fs: int = 16000,
        resample: bool = False,
        max_len_s: float | None = None,
        val_fraction: float = 0.05,
        holdout: str = "auto",
        noise_augment: float = 0.0,
        max_n_samples: int | None = None,
        allow_incomplete: bool = False,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if holdout not in ("speaker", "file", "auto"):
            raise ValueError(f"holdout must be 'speaker', 'file' or 'auto', got {holdout!r}")
        if not 0.0 <= noise_augment <= 1.0:
            raise ValueError(f"noise_augment is a probability, got {noise_augment}")
        if noise_augment > 0 and split != "train":
            raise ValueError("noise_augment only applies to the train split")
        self.fs = int(fs)
        self.split = split
        self.resample = bool(resample)
        self.noise_augment = float(noise_augment)
        require_complete_corpus(root, allow_incomplete)
        folder = require_dir(Path(root) / ("test" if split == "test" else "train"), VCTK_LAYOUT)
        self.noisy_dir = require_dir(folder / "noisy", VCTK_LAYOUT)
        self.clean_dir = require_dir(folder / "clean", VCTK_LAYOUT)
        names = list_audio(self.noisy_dir, VCTK_LAYOUT)
        if split != "test":
            if holdout == "auto":
                n_spk = len({speaker_of(n) for n in names})
                holdout = "speaker" if n_spk >= MIN_SPEAKERS else "file"
            key = speaker_of if holdout == "speaker" else (lambda n: n)
            held = hash_holdout([key(n) for n in names], val_fraction)
            names = [n for n in names if (key(n) in held) == (split == "val")]
        if max_n_samples is not None:
            names = names[: int(max_n_samples)]
        require_same_names(names, self.clean_dir)
        self.names = names
        self.crop = None if max_len_s is None else int(round(max_len_s * self.fs))
        if self.crop is not None and self.crop <= 0:
            raise ValueError(f"max_len_s must be positive, got {max_len_s}")

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, idx: int) -> np.ndarray:
        """[clean, noise] of file `idx`, shape (2, L), at rate `fs`."""
        fname = self.names[idx] + ".wav"
        noisy_path, clean_path = self.noisy_dir / fname, self.clean_dir / fname
        noisy = read_checked(noisy_path, self.fs, self.resample, channels=1)[0]
        clean = read_checked(clean_path, self.fs, self.resample, channels=1)[0]
        if noisy.shape != clean.shape:
            raise DatasetError(
                f"sources of different lengths: {noisy_path} has {noisy.shape[0]} samples, "
                f"{clean_path} has {clean.shape[0]}"
            )
        return np.stack([clean, noisy - clean])

    def _crop(self, x: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return x
        start = random_start(x.shape[-1], self.crop) if self.split == "train" else 0
        return fit_length(x[:, start : start + self.crop], self.crop, mode="tile")

    def _other_noise(self, idx: int, length: int, energy_to: float) -> np.ndarray | None:
        """Noise of another random file, `length` samples, energy `energy_to` (None if silent)."""
        j = int(torch.randint(0, len(self.names) - 1, ()).item())
        j += j >= idx  # skip the item itself
        noise = fit_length(self._crop(self._load(j))[1], length, mode="tile")
        energy = float(np.sum(noise.astype(np.float64) ** 2))
        if energy <= 1e-12:
            return None
        return (noise * np.sqrt(energy_to / energy)).astype(np.float32)

    def __getitem__(self, idx: int):
        tgt = self._crop(self._load(idx))
        if (
            self.noise_augment > 0
            and len(self.names) > 1
            and float(torch.rand(())) < self.noise_augment
        ):
            energy = float(np.sum(tgt[1].astype(np.float64) ** 2))
            other = self._other_noise(idx, tgt.shape[-1], energy)
            if other is not None:
                tgt = np.stack([tgt[0], other])
        return to_item(tgt.sum(axis=0, keepdims=True), tgt)

"""MUSDB18-HQ loader for music stem separation (drums, bass, other, vocals).

Files are 44.1 kHz stereo wav; items are resampled to the model rate `fs`
with soxr and reduced to one channel, or kept stereo for evaluation (see `MUSDB18HQ`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.audio import (
    AudioInfo,
    DatasetError,
    audio_info,
    check_sum,
    fit_length,
    hash_holdout,
    random_colour,
    random_start,
    read_audio,
    require_complete_corpus,
    require_dir,
    resample,
    to_item,
    uniform,
)

log = logging.getLogger(__name__)

MUSDB_LAYOUT = "{root}/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav"
STEMS = ["drums", "bass", "other", "vocals"]
CHANNEL_MODES = ("mono", "random", "left", "right", "stereo")

# Data, not code: the 14 tracks of the official "valid" subset of the training
# set, as defined by the musdb package's split (musdb/configs/mus.yaml,
# `validation_tracks`), used by open-unmix and demucs alike.
VALID_TRACKS = [
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
]


def read_valid_tracks(path: Path) -> list[str]:
    """The "valid_tracks" list of a corpus manifest.json."""
    try:
        with open(path) as f:
            names = json.load(f)["valid_tracks"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"cannot read the list 'valid_tracks' from {path}: {e!r}") from e
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"'valid_tracks' in {path} is not a list of track names")
    return names


class MUSDB18HQ(Dataset):
    domain = "music"  # the evaluation scripts report music metrics (BSS Eval v4 SDR)

    """Items (mix (1, L), stems (K, L)) from `MUSDB_LAYOUT`, resampled to `fs`.

    - `split`: "train" and "valid" come from the train folder (the tracks named
      in `valid_tracks`, default the official list, are held out of train;
      `valid_tracks="manifest"` reads the list under "valid_tracks" in
      `{root}/manifest.json` (written by `datasets.synth`); if none of them
      exist, a deterministic `valid_fraction` of tracks chosen by a stable
      hash is held out instead, with a logged note); "test" is the test folder.
    - `channels`: "mono" averages the two channels (the default: the stem sum
      is preserved), "left"/"right" pick one, "random" picks one at random per
      training item and the left one on valid/test (deterministic).
      "stereo" keeps every channel: items are then mix (C, L) and stems (K, C, L),
      for the evaluation scripts (BSS Eval v4 scores stereo stems, the model
      separates each channel); not for training batches, which are mono.
    - `segment_s`: training items are random segments of this length
      (`samples_per_track` per track and epoch); None = whole tracks. On valid
      and test the items are whole tracks, or the centred segment of
      `eval_segment_s` seconds if that is set.
    - `mixture_from_stems`: the mixture is the sum of the stems (MUSDB
      mixtures equal it up to the mastering limiter); otherwise mixture.wav is
      read. `check_mixture` compares mixture.wav with the stem sum (max abs
      difference within `mixture_tol`).
    - `random_mix`: training only; every stem gets its own random offset.
    - Remix augmentation (training only, off by default): `remix_tracks` draws every
      stem from its own random track (and offset), `stem_gain_db` scales each stem by
      U(-g, g) dB, `eq_db` colours each stem with a random smooth zero-phase response of
      at most that many dB (`datasets.audio.random_colour`). The mixture is always the
      sum of the stems as returned.
    """

    def __init__(
        self,
        root: str | Path = "data/musdb18hq",
        split: str = "train",
        fs: int = 44100,
        channels: str = "mono",
        segment_s: float | None = None,
        sources: list[str] | None = None,
        mixture_from_stems: bool = True,
        check_mixture: bool = False,
        mixture_tol: float = 0.05,
        random_mix: bool = False,
        samples_per_track: int = 1,
        valid_tracks: list[str] | str | None = None,
        valid_fraction: float = 0.1,
        eval_segment_s: float | None = None,
        max_n_samples: int | None = None,
        allow_incomplete: bool = False,
        remix_tracks: bool = False,
        stem_gain_db: float = 0.0,
        eq_db: float = 0.0,
    ):
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {channels!r}")
        remix = random_mix or remix_tracks or stem_gain_db or eq_db
        if remix and not mixture_from_stems:
            raise ValueError("random_mix, remix_tracks, stem_gain_db and eq_db need "
                             "mixture_from_stems=True")
        if stem_gain_db < 0 or eq_db < 0:
            raise ValueError(f"stem_gain_db and eq_db must be >= 0, got {stem_gain_db}, {eq_db}")
        self.fs = int(fs)
        self.split = split
        self.train = split == "train"
        self.channels = channels
        self.source_names = list(STEMS if sources is None else sources)
        self.n_sources = len(self.source_names)
        self.mixture_from_stems = bool(mixture_from_stems)
        self.check_mixture = bool(check_mixture) and not remix
        self.mixture_tol = float(mixture_tol)
        self.random_mix = bool(random_mix) and self.train
        self.remix_tracks = bool(remix_tracks) and self.train
        self.stem_gain_db = float(stem_gain_db) if self.train else 0.0
        self.eq_db = float(eq_db) if self.train else 0.0
        self.samples_per_track = int(samples_per_track) if self.train else 1
        seg = segment_s if self.train else eval_segment_s
        self.segment = None if seg is None else int(round(seg * self.fs))

        require_complete_corpus(root, allow_incomplete)
        folder = require_dir(Path(root) / ("test" if split == "test" else "train"), MUSDB_LAYOUT)
        tracks = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not tracks:
            raise DatasetError(f"no track folders found in {folder}; expected {MUSDB_LAYOUT}")
        if split != "test":
            if valid_tracks == "manifest":
                valid_tracks = read_valid_tracks(Path(root) / "manifest.json")
            tracks = self._split_tracks(tracks, valid_tracks, valid_fraction)
        if max_n_samples is not None:
            tracks = tracks[: int(max_n_samples)]
        self.folder = folder
        self.tracks = tracks
        self.info = {t: self._track_info(folder / t) for t in tracks}
        if self.samples_per_track == 1:
            self.names = list(tracks)
        else:
            self.names = [f"{t}#{k}" for t in tracks for k in range(self.samples_per_track)]

    def _split_tracks(
        self, tracks: list[str], valid_tracks: list[str] | None, fraction: float
    ) -> list[str]:
        wanted = VALID_TRACKS if valid_tracks is None else list(valid_tracks)
        held = set(wanted) & set(tracks)
        if not held:
            held = hash_holdout(tracks, fraction)
            log.warning(
                "none of the %d validation track names exist in the corpus: holding out "
                "%d of %d tracks chosen by a stable hash instead",
                len(wanted), len(held), len(tracks),
            )
        keep = [t for t in tracks if (t in held) == (self.split == "valid")]
        if not keep:
            raise DatasetError(f"the {self.split} split of {tracks} is empty")
        return keep

    def _files(self) -> list[str]:
        needs_mix = not self.mixture_from_stems or self.check_mixture
        return self.source_names + (["mixture"] if needs_mix else [])

    def _track_info(self, track_dir: Path) -> AudioInfo:
        """Shared header of the needed files of a track; they must agree."""
        ref = None
        for stem in self._files():
            path = track_dir / f"{stem}.wav"
            info = audio_info(path)
            if info.channels not in (1, 2):
                raise DatasetError(
                    f"wrong number of channels in {path}: {info.channels}, expected 1 or 2"
                )
            if ref is None:
                ref, ref_path = info, path
            elif info.frames != ref.frames:
                raise DatasetError(
                    f"sources of different lengths: {path} has {info.frames} samples, "
                    f"{ref_path} has {ref.frames}"
                )
            elif info.fs != ref.fs:
                raise DatasetError(
                    f"sample rate mismatch in {path}: {info.fs} Hz, {ref_path} is {ref.fs} Hz"
                )
            elif info.channels != ref.channels:
                raise DatasetError(
                    f"wrong number of channels in {path}: {info.channels}, "
                    f"{ref_path} has {ref.channels}"
                )
        return ref

    def __len__(self) -> int:
        return len(self.names)

    def _channel(self, n_channels: int) -> int | str | None:
        """Channel index to keep, None to average them, "all" to keep them all."""
        if self.channels == "stereo":
            return "all"
        if self.channels == "mono":
            return None
        if self.channels == "random" and self.train:
            return int(torch.randint(0, n_channels, ()).item())
        return min(int(self.channels == "right"), n_channels - 1)

    def _start(self, frames: int, n_in: int | None) -> int:
        if n_in is None or frames <= n_in:
            return 0
        return random_start(frames, n_in) if self.train else (frames - n_in) // 2

    def _read(self, path: Path, start: int, n_in: int | None, ch: int | None, info) -> np.ndarray:
        """`path` from `start` (native rate) resampled to `fs`: (L,), or (C, L) for "all"."""
        stop = None if n_in is None else start + n_in
        x = read_audio(path, start, stop)
        if ch == "all":
            y = resample(x, info.fs, self.fs)
        else:
            x = x.mean(axis=0) if ch is None else x[ch]
            y = resample(x[None], info.fs, self.fs)[0]
        return y if self.segment is None else fit_length(y, self.segment)

    def __getitem__(self, idx: int):
        track = self.tracks[idx // self.samples_per_track]
        info, track_dir = self.info[track], self.folder / track
        # native-rate samples needed to cover the segment after resampling
        n_in = None if self.segment is None else math.ceil(self.segment * info.fs / self.fs)
        ch = self._channel(info.channels)
        start = self._start(info.frames, n_in)
        stems = []
        for k, name in enumerate(self.source_names):
            if self.remix_tracks and k > 0:
                track = self.tracks[int(torch.randint(len(self.tracks), ()))]
                info, track_dir = self.info[track], self.folder / track
                n_in = None if self.segment is None else math.ceil(self.segment * info.fs / self.fs)
            if self.random_mix or (self.remix_tracks and k > 0):
                start = self._start(info.frames, n_in)
            x = self._read(track_dir / f"{name}.wav", start, n_in, ch, info)
            if self.eq_db > 0:
                x = random_colour(x, self.eq_db)
            if self.stem_gain_db > 0:
                x = x * 10 ** (uniform(-self.stem_gain_db, self.stem_gain_db) / 20)
            stems.append(x.astype(np.float32))
        tgt = np.stack(stems)
        # (1, L) for one channel; (C, L) with stems (K, C, L) for "stereo"
        stem_sum = tgt.sum(axis=0) if ch == "all" else tgt.sum(axis=0, keepdims=True)
        mix = stem_sum
        if not self.mixture_from_stems or self.check_mixture:
            mix_path = track_dir / "mixture.wav"
            mixture = self._read(mix_path, start, n_in, ch, info)
            mixture = mixture if ch == "all" else mixture[None]
            if self.check_mixture:  # (C, L) against (K, C, L) works as (1, L) against (K, L)
                check_sum(mixture[None] if ch == "all" else mixture, tgt, mix_path,
                          self.mixture_tol)
            if not self.mixture_from_stems:
                mix = mixture
        return to_item(mix, tgt)

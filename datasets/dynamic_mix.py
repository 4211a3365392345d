"""Dynamic mixing: new mixtures of a corpus's own sources at every draw.

A fixed corpus pairs each recording with one or two partners; a model trained on it
sees a few thousand mixtures many times. `DynamicMix` draws, for every training
example, K source files from K different items (source slots at random), a random
crop of each, and new relative levels, and sums them: the same recordings, far more
mixtures (as in Zeghidour and Grangier's Wavesplit, 2021). Speakers of one example are
distinct whenever the file names tell the speakers (`speakers_in_name`).

Two optional augmentations make a few dozen recorded voices look like more voices and
more recording chains, each drawn per source:

- speed perturbation: the crop is played `a` times faster, a ~ U(`speed`), by reading
  `a` times as many samples and resampling them back to the crop length (soxr). Pitch,
  formants and tempo all scale by `a`, as if a speaker of another vocal-tract length
  spoke at another rate (Ko et al., Interspeech 2015, train speech recognisers so).
- colouring: a random smooth magnitude response, a sum of `eq_bands` cosines in the
  frequency axis with dB amplitudes U(-1, 1) * `eq_db` / `eq_bands` (at most `eq_db`
  in all), applied with an FFT to the crop: other microphones, rooms' early colouring
  and band limits, without a phase change.

A third, `reverb_p`, puts the speakers of an example in a room with that probability:
one RT60 ~ U(`rt60`) per example, and per source its own synthetic response
(`datasets.audio.room_response`, direct-to-reverberant ratio U(`drr_db`)), as two
talkers at two places of one room. The targets are the reverberant sources (the
separation task of WHAMR!'s reverberant version, not dereverberation), so the mixture
stays their sum.

A second corpus, `extra` (e.g. the generated espeak-ng speech of `datasets.synth`), can
lend sources: each source of a remix comes from it with probability `extra_p`, so an
example pairs two recorded voices, a recorded and a generated one, or two generated
ones. Its speakers count apart from the main corpus's, and its crops go through the same
augmentations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.signal import fftconvolve
from torch.utils.data import Dataset

from datasets.audio import (
    DatasetError,
    audio_info,
    check_info,
    fit_length,
    random_colour,
    random_start,
    read_audio,
    resample,
    room_response,
    to_item,
    uniform,
)
from datasets.wsj0_mix import ParallelFolderMix


def speakers_in_name(name: str) -> list[str]:
    """Speaker ids of a WSJ0-style item name `<utt1>_<lvl1>_<utt2>_<lvl2>[...]`.

    An utterance id `<speaker>-<rest>` (this project's corpora) gives `<speaker>`; a WSJ0
    utterance id (`01aa010b`) gives its first three characters, the WSJ0 speaker code.
    """
    utts = name.split("_")[0::2]
    return [u.split("-")[0] if "-" in u else u[:3] for u in utts]


class DynamicMix(Dataset):
    """Examples (mix (1, L), sources (K, L)) remixed on the fly from `corpus`.

    `corpus` is a parallel-folder corpus (WSJ0Mix, LibriMix) whose `max_len_s` sets the
    crop. Each source is brought to unit RMS over its crop, then to a level in dB: 0 for
    source 1 and U(-`max_rel_db`, 0) for the others (the WSJ0-mix recipe), and the whole
    example by a common gain U(`gain_db`). `p` is the probability of a remix; otherwise
    the corpus's own item is returned. `speed` ((lo, hi) or None) and `eq_db` (0: off)
    perturb each source of a remix before its level is set, and `reverb_p` (0: off) puts
    the sources of a remix in a room (RT60 U(`rt60`) s, DRR U(`drr_db`) dB; see the
    module's notes). `extra` (a corpus at the same rate, or None) lends each source with
    probability `extra_p`; a callable that returns the corpus (a Hydra partial) is called
    only when `extra_p` > 0, so a configured but unused corpus need not exist.
    Random draws use torch's RNG, seeded per worker.
    """

    def __init__(self, corpus: ParallelFolderMix, p: float = 1.0, max_rel_db: float = 5.0,
                 gain_db: tuple[float, float] = (-3.0, 3.0), max_tries: int = 20,
                 speed: tuple[float, float] | None = None, eq_db: float = 0.0,
                 eq_bands: int = 4, reverb_p: float = 0.0,
                 rt60: tuple[float, float] = (0.2, 0.7),
                 drr_db: tuple[float, float] = (0.0, 12.0),
                 extra: ParallelFolderMix | Callable[[], ParallelFolderMix] | None = None,
                 extra_p: float = 0.0):  # fmt: skip
        if corpus.crop is None:
            raise ValueError("DynamicMix needs a corpus with max_len_s (the crop length)")
        if not 0.0 <= extra_p <= 1.0:
            raise ValueError(f"extra_p must be in [0, 1], got {extra_p}")
        if extra_p == 0:
            extra = None
        elif callable(extra) and not isinstance(extra, Dataset):
            try:  # a config's partial: the corpus is opened only when it is used
                extra = extra()
            except DatasetError as e:
                raise DatasetError(
                    f"extra_p is {extra_p} but the extra corpus cannot be opened: {e}. Build "
                    "it (generated speech: python -m datasets.synth speech --n-sources "
                    f"{corpus.n_sources} --fs {corpus.fs} --n-tr 1000 --n-cv 50 --n-tt 50), point "
                    "datamodule.train.extra.root at one, or set extra_p=0") from e
        if extra_p > 0 and extra is None:
            raise ValueError("extra_p > 0 needs an extra corpus (datamodule.train.extra)")
        if extra is not None and extra.fs != corpus.fs:
            raise ValueError(f"the extra corpus {extra.mix_dir} is at {extra.fs} Hz, the main one "
                             f"at {corpus.fs} Hz: build or load both at one rate")
        if extra is not None and len(extra) == 0:
            raise ValueError(f"the extra corpus {extra.mix_dir} has no items")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if speed is not None:
            speed = (float(speed[0]), float(speed[1]))
            if not 0.5 <= speed[0] <= speed[1] <= 2.0:
                raise ValueError(f"speed must be (lo, hi) with 0.5 <= lo <= hi <= 2, got {speed}")
        if eq_db < 0 or eq_bands < 1:
            raise ValueError(f"eq_db must be >= 0 and eq_bands >= 1, got {eq_db}, {eq_bands}")
        self.speed, self.eq_db, self.eq_bands = speed, float(eq_db), int(eq_bands)
        rt60 = (float(rt60[0]), float(rt60[1]))
        drr_db = (float(drr_db[0]), float(drr_db[1]))
        if not 0.0 <= reverb_p <= 1.0:
            raise ValueError(f"reverb_p must be in [0, 1], got {reverb_p}")
        if not 0.0 < rt60[0] <= rt60[1] <= 2.0:
            raise ValueError(f"rt60 must be (lo, hi) seconds with 0 < lo <= hi <= 2, got {rt60}")
        if drr_db[0] > drr_db[1]:
            raise ValueError(f"drr_db must be (lo, hi) with lo <= hi, got {drr_db}")
        self.reverb_p, self.rt60, self.drr_db = float(reverb_p), rt60, drr_db
        self.corpus = corpus
        self.extra, self.extra_p = extra, float(extra_p)
        self.fs, self.n_sources = corpus.fs, corpus.n_sources
        self.source_names = corpus.source_names
        self.p, self.max_rel_db = float(p), float(max_rel_db)
        self.gain_db = (float(gain_db[0]), float(gain_db[1]))
        self.max_tries = int(max_tries)
        # Names that do not tell the K speakers: each source counts as its own speaker.
        self.speakers = self._speakers(corpus)
        self.extra_speakers = self._speakers(self.extra, "extra:") if self.extra else []

    @staticmethod
    def _speakers(corpus: ParallelFolderMix, prefix: str = "") -> list[list[str]]:
        """Per item, the speaker of each source slot (`prefix` keeps two corpora apart)."""
        out = []
        for i, name in enumerate(corpus.names):
            spk = speakers_in_name(name)
            if len(spk) != corpus.n_sources:  # the name does not tell: each its own speaker
                spk = [f"#{i}.{k}" for k in range(corpus.n_sources)]
            out.append([prefix + s for s in spk])
        return out

    def __len__(self) -> int:
        return len(self.corpus)

    def _uniform(self, lo: float, hi: float) -> float:
        return uniform(lo, hi)

    def _from_extra(self) -> bool:
        return self.extra is not None and float(torch.rand(())) < self.extra_p

    def draw_sources(self, idx: int) -> list[tuple[ParallelFolderMix, int, int]]:
        """(corpus, item, source slot) of each source, of distinct speakers: item `idx` of
        the main corpus first, unless the extra corpus lends that source too."""
        picks, used = [], set()
        for k in range(self.n_sources):
            extra = self._from_extra()
            corpus, speakers = ((self.extra, self.extra_speakers) if extra
                                else (self.corpus, self.speakers))
            for _ in range(self.max_tries):
                if k == 0 and not extra:
                    item = idx
                else:
                    item = int(torch.randint(len(corpus), ()))
                slot = int(torch.randint(corpus.n_sources, ()))
                spk = speakers[item][slot]
                if spk not in used:
                    break
            picks.append((corpus, item, slot))
            used.add(spk)
        return picks

    def read_crop(self, corpus: ParallelFolderMix, item: int, slot: int) -> np.ndarray:
        """A random crop of one source, speed-perturbed when `speed` is set."""
        path = corpus.paths(item)[1 + slot]
        info = audio_info(path)
        check_info(path, info, fs=self.fs, channels=1)
        crop = self.corpus.crop
        rate = self._uniform(*self.speed) if self.speed else 1.0
        n_read = int(round(crop * rate))
        start = random_start(info.frames, n_read)
        x = read_audio(path, start, min(info.frames, start + n_read))
        if rate != 1.0:
            # n_read samples played in crop samples' time: resample n_read -> crop
            x = resample(fit_length(x, n_read), n_read, crop)
        return fit_length(x[0], crop).astype(np.float64)

    def reverberate(self, srcs: np.ndarray) -> np.ndarray:
        """(K, L) dry sources -> the same sources heard in one room, each from its place."""
        rt60 = self._uniform(*self.rt60)
        n = srcs.shape[1]
        out = np.empty_like(srcs)
        for k, x in enumerate(srcs):
            ir = room_response(self.fs, rt60, self._uniform(*self.drr_db))
            out[k] = fftconvolve(x, ir)[:n]
        return out

    def __getitem__(self, idx: int):
        if float(torch.rand(())) >= self.p:
            return self.corpus[idx]
        srcs = np.stack([self.read_crop(*pick) for pick in self.draw_sources(idx)])
        if self.eq_db > 0:
            srcs = np.stack([random_colour(x, self.eq_db, self.eq_bands) for x in srcs])
        if self.reverb_p > 0 and float(torch.rand(())) < self.reverb_p:
            srcs = self.reverberate(srcs)
        rms = np.sqrt(np.mean(srcs**2, axis=1, keepdims=True))
        levels = [0.0] + [-self._uniform(0.0, self.max_rel_db) for _ in srcs[1:]]
        gains = 10 ** ((np.array(levels)[:, None] + self._uniform(*self.gain_db)) / 20)
        srcs = srcs / np.maximum(rms, 1e-8) * gains * 10 ** (-25 / 20)  # -25 dBFS as WSJ0
        srcs = srcs[torch.randperm(len(srcs)).numpy()]  # the 0-dB source in any slot
        srcs = srcs.astype(np.float32)
        mix = srcs.sum(axis=0, keepdims=True, dtype=np.float32)
        return to_item(mix, srcs)

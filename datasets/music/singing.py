"""Sung vocals from recorded voices: one speaker's syllables, each pitched to a melody note.

The recorded-voice packages with short utterances (klettres-data: letters and
syllables, ktuberling-data: single words; one speaker per language) give the
syllables. A track's singer is one speaker of the recorded-voice split that matches
the music split (train tracks: the `tr` speakers, test tracks: the `tt` speakers, as
`datasets.voices` assigns them), so the test split hears voices no training track
has. For each note of the vocals stem one of the singer's syllables is drawn, its
fundamental frequency estimated (`estimate_f0`), and it is resampled so that it
sounds at the note's pitch class in the octave nearest the speaker's own voice
(a man sings the written melody an octave or two down): the shift is at most half
an octave either way, so the voice keeps its character. Resampling shifts the
formants with the pitch and keeps the syllable's own intonation; the syllable is cut
to the note's length plus a short release. Own code and choices (MIT).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import soxr
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft

from datasets.voices.corpus import (
    MIN_SPEAKER_SECONDS,
    Recording,
    inventory,
    load_pool,
    speaker_seconds,
)
from datasets.voices.packages import prepare_packages
from datasets.voices.speakers import assign_splits, speaker_of

SINGING_PACKAGES = ("klettres-data", "ktuberling-data")
F0_RANGE = (60.0, 500.0)  # Hz searched for a spoken voice's fundamental
VOICED_NACF = 0.6  # normalised autocorrelation of a voiced frame at its period
MIN_VOICED_FRAMES = 3
SPLIT_FS = 8000  # the rate at which datasets.voices measures speakers for its split
VOICE_SPLIT = {"train": "tr", "test": "tt"}  # music split -> recorded-voice split
FADE_IN_S, RELEASE_S = 0.005, 0.04


def midi_hz(key: float) -> float:
    return 440.0 * 2 ** ((key - 69) / 12)


def estimate_f0(x: np.ndarray, fs: int, f0_range=F0_RANGE, frame_s: float = 0.05):
    """Median fundamental (Hz) over the voiced 50-ms frames of mono `x`, or None.

    Per frame (10-ms hop) the autocorrelation, normalised by its overlap so that a
    periodic signal scores 1 at every multiple of its period; the period is the
    shortest lag within `f0_range` scoring at least 90 % of the best one (no octave
    errors to a multiple), and the frame is voiced when that score is at least
    VOICED_NACF and the frame is within 30 dB of the loudest.
    """
    n, hop = int(frame_s * fs), max(1, int(0.01 * fs))
    lo, hi = int(np.floor(fs / f0_range[1])), int(np.ceil(fs / f0_range[0]))
    if x.size < n or hi >= n - 1:
        return None
    frames = sliding_window_view(np.asarray(x, np.float64), n)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames**2, axis=1)
    loud = energy > max(energy.max() * 1e-3, 1e-12)
    spec = fft.rfft(frames, 2 * n, axis=1)
    ac = fft.irfft(np.abs(spec) ** 2, 2 * n, axis=1)[:, : hi + 2]
    lags = np.arange(hi + 2)
    nacf = ac / np.maximum(ac[:, :1], 1e-12) * n / (n - lags)
    f0s = []
    for row in np.flatnonzero(loud):
        seg = nacf[row, lo : hi + 1]
        best = seg.max()
        if best < VOICED_NACF:
            continue
        peaks = np.flatnonzero((seg[1:-1] >= seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
        peaks = peaks[seg[peaks] >= 0.9 * best]
        if peaks.size == 0:
            continue
        k = lo + int(peaks[0])
        a, b, c = nacf[row, k - 1], nacf[row, k], nacf[row, k + 1]
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den < 0 else 0.0  # parabolic peak
        f0s.append(fs / (k + shift))
    return float(np.median(f0s)) if len(f0s) >= MIN_VOICED_FRAMES else None


def pitch_shift(x: np.ndarray, ratio: float) -> np.ndarray:
    """Play `x` `ratio` times faster: pitch x ratio, length / ratio (soxr resampling)."""
    return soxr.resample(np.asarray(x, np.float32), float(ratio), 1.0, quality="HQ")


def note_ratio(f0: float, key: float) -> float:
    """Resampling ratio taking `f0` to the pitch class of `key`, within half an octave."""
    target = midi_hz(key)
    return target * 2.0 ** np.round(np.log2(f0 / target)) / f0


def sing(notes, syllables, duration: float, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float64 (n,): one drawn syllable per note [start s, length s, key, velocity].

    `syllables` is a list of (audio at fs, f0 in Hz). Notes that overlap (chords)
    add up; every syllable fades in over 5 ms and out over RELEASE_S after its note.
    """
    n = int(round(duration * fs))
    out = np.zeros(n)
    fade_in, release = max(1, int(FADE_IN_S * fs)), max(1, int(RELEASE_S * fs))
    for start, length, key, velocity in notes:
        on = int(round(start * fs))
        if on >= n:
            continue
        audio, f0 = syllables[int(rng.integers(len(syllables)))]
        y = pitch_shift(audio, note_ratio(f0, key)).astype(np.float64)
        y = y[: min(y.size, int(round(length * fs)) + release, n - on)]
        env = np.ones(y.size)
        head, tail = min(fade_in, y.size), min(release, y.size)
        env[:head] = np.arange(1, head + 1) / head
        env[y.size - tail :] *= np.arange(tail, 0, -1) / tail
        out[on : on + y.size] += y * env * velocity / 127
    return out


def singers(cache: str | Path) -> tuple[dict, dict, dict]:
    """Fetch SINGING_PACKAGES; ({music split: [speaker, ...]}, {package: provenance},
    {package: unpacked tree}).

    The speakers split as `datasets.voices` splits them (per package, from each
    speaker's trimmed seconds at SPLIT_FS, speakers with too little audio left out),
    so music test tracks sing with the recorded-voice corpus's held-out `tt` speakers.
    """
    pkgs = prepare_packages(cache, SINGING_PACKAGES)
    trees = {name: str(p.tree) for name, p in pkgs.items()}
    recordings, _ = inventory({name: Path(t) for name, t in trees.items()})
    pool, _ = load_pool(recordings, (SPLIT_FS,), progress=False)
    seconds = speaker_seconds(pool, SPLIT_FS)
    seconds = {s: v for s, v in seconds.items() if v >= MIN_SPEAKER_SECONDS}
    split = assign_splits(seconds)
    return ({music: split[voice] for music, voice in VOICE_SPLIT.items()},
            {name: p.as_dict() for name, p in pkgs.items()}, trees)  # fmt: skip


def speaker_recordings(trees: dict, speaker: str) -> list[Recording]:
    """The speaker's audio files in the unpacked trees, byte-identical copies once."""
    out, seen = [], set()
    for name in sorted(trees):
        root = Path(trees[name])
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if speaker_of(name, rel) == speaker:
                digest = hashlib.sha1(path.read_bytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    out.append(Recording(name, rel, path))
    return out


@lru_cache(maxsize=4)
def syllables_of(trees: tuple, speaker: str, fs: int) -> tuple:
    """The speaker's voiced recordings at `fs` with their f0: ((audio, f0), ...).

    `trees` is `singers(...)[2]` as sorted (name, path) pairs. Cached per process: a
    track's notes all come from one speaker.
    """
    recs = speaker_recordings(dict(trees), speaker)
    pool, _ = load_pool({speaker: recs}, (fs,), progress=False)
    out = []
    for utt in pool[speaker]:
        f0 = estimate_f0(utt[fs], fs)
        if f0 is not None:
            out.append((utt[fs], f0))
    if not out:
        raise ValueError(f"no voiced recording of the speaker {speaker!r} in {dict(trees)}")
    return tuple(out)

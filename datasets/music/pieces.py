"""Real compositions from the music21 corpus, arranged into the four stems.

A piece with at least three voices (Bach chorales, Palestrina masses, string
quartets) becomes a composition in the format of `datasets.synth.composition`:
its highest voice is the vocals stem (a GM voice patch), its lowest the bass stem
(a bass instrument, sometimes an octave lower), the voices between form the other
stem, each on its own instrument; a drum part in the piece's metre is added. An
excerpt of the wanted length starts on a random bar; the tempo is drawn.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from datasets.synth.composition import (
    BASS_PROGRAMS,
    DRUM_KITS,
    OTHER_PROGRAMS,
    VOCAL_PROGRAMS,
    drum_part,
)
from datasets.synth.music import parts_of

COMPOSERS = ("bach", "palestrina", "haydn", "mozart", "beethoven")
MIN_VOICES = 3
MIN_COVERAGE = 0.5  # a voice must sound through at least half of the excerpt to be used


def corpus_pieces() -> list[str]:
    """Paths (as strings, sorted) of the multi-voice pieces of the music21 corpus."""
    from music21 import corpus

    out = []
    for composer in COMPOSERS:
        for path in corpus.getComposer(composer):
            if path.suffix in (".mxl", ".xml", ".krn"):
                out.append(str(path))
    return sorted(out)


@lru_cache(maxsize=8)
def read_piece(path: str) -> dict | None:
    """{"voices": [[(onset_q, dur_q, midi), ...] per voice], "beat_q", "beats", "length_q"}.

    None when the piece cannot be parsed or has fewer than MIN_VOICES voices with notes.
    """
    from music21 import converter

    try:
        score = converter.parse(path)
    except Exception:  # noqa: BLE001 - music21 raises many kinds; such a piece is skipped
        return None
    voices = []
    for part in score.parts:
        notes = []
        for el in part.stripTies().flatten().notes:
            onset, dur = float(el.offset), float(el.quarterLength)
            if dur <= 0:
                continue
            for p in el.pitches:
                notes.append((onset, dur, int(p.midi)))
        if notes:
            voices.append(sorted(notes))
    if len(voices) < MIN_VOICES:
        return None
    sigs = score.recurse().getElementsByClass("TimeSignature")
    beat_q, beats = (1.0, 4) if not sigs else (float(sigs[0].beatDuration.quarterLength),
                                               int(sigs[0].beatCount))  # fmt: skip
    if beats < 2:  # a one-beat bar (e.g. fast 3/8): count its three eighths as beats
        beat_q, beats = beat_q / 3, 3
    length = max(n[0] + n[1] for v in voices for n in v)
    return {"voices": voices, "beat_q": beat_q, "beats": beats, "length_q": length}


def coverage(voice, start_q: float, end_q: float) -> float:
    """Share of [start_q, end_q) during which at least one note of `voice` sounds."""
    spans = sorted((max(start_q, on), min(end_q, on + dur)) for on, dur, _ in voice
                   if on < end_q and on + dur > start_q)  # fmt: skip
    covered, reach = 0.0, start_q
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered / (end_q - start_q)


def _pan(rng, width):
    return round(float(rng.uniform(-width, width)), 3)


def _notes(voice, start_q, end_q, sec_per_q, rng, transpose=0, vel=90):
    out = []
    for onset, dur, key in voice:
        if start_q <= onset < end_q:
            t = (onset - start_q) * sec_per_q + rng.normal(0, 0.003)
            out.append([round(max(0.0, t), 5), round(min(dur, end_q - onset) * sec_per_q, 5),
                        int(np.clip(key + transpose, 24, 100)),
                        int(np.clip(vel + rng.integers(-10, 11), 20, 127))])  # fmt: skip
    return out


def arrange_piece(piece: dict, rng: np.random.Generator, duration: float) -> dict | None:
    """A composition of at most `duration` seconds from a random bar of the piece."""
    bpm = float(rng.uniform(60, 120))  # beats per minute
    sec_per_q = 60.0 / bpm / piece["beat_q"]
    bar_q = piece["beat_q"] * piece["beats"]
    n_bars_total = int(np.ceil(piece["length_q"] / bar_q))
    need_bars = int(np.ceil(duration / (bar_q * sec_per_q)))
    first = int(rng.integers(0, max(1, n_bars_total - need_bars + 1)))
    start_q, end_q = first * bar_q, first * bar_q + need_bars * bar_q
    # Voices that rest through much of the excerpt (e.g. trumpets and timpani in a
    # chorale with instruments) would leave a stem silent: only sounding voices are used.
    playing = [v for v in piece["voices"] if coverage(v, start_q, end_q) >= MIN_COVERAGE]
    if len(playing) < MIN_VOICES:
        return None
    order = sorted(playing, key=lambda v: np.mean([n[2] for n in v]))
    low, mids, high = order[0], order[1:-1], order[-1]
    bass_shift = -12 if np.mean([n[2] for n in low]) > 48 and rng.random() < 0.5 else 0
    stems = {
        "vocals": {"program": int(rng.choice(VOCAL_PROGRAMS)), "drums": False,
                   "pan": _pan(rng, 0.15),
                   "notes": _notes(high, start_q, end_q, sec_per_q, rng, vel=95)},
        "bass": {"program": int(rng.choice(BASS_PROGRAMS)), "drums": False, "pan": _pan(rng, 0.1),
                 "notes": _notes(low, start_q, end_q, sec_per_q, rng, bass_shift, vel=100)},
        "other": {"drums": False, "parts": [
            {"program": int(rng.choice(OTHER_PROGRAMS)), "pan": _pan(rng, 0.7),
             "notes": _notes(v, start_q, end_q, sec_per_q, rng, vel=80)} for v in mids]},
        "drums": {"program": int(rng.choice(DRUM_KITS)), "drums": True, "pan": _pan(rng, 0.1),
                  "notes": drum_part(rng, need_bars, 60.0 / bpm, piece["beats"])},
    }  # fmt: skip
    if any(not p["notes"] for s in stems.values() for p in parts_of(s)):
        return None  # a voice rests through the whole excerpt: a silent stem scores nothing
    for stem in stems.values():
        stem["gain_db"] = round(float(rng.uniform(-4, 2)), 2)
        stem["reverb"] = round(float(rng.uniform(0.05, 0.3)), 3)
    seconds = min(duration, (piece["length_q"] - start_q) * sec_per_q)
    return {"tempo": round(bpm, 2), "beats": piece["beats"], "seconds": round(seconds, 3),
            "stems": stems}  # fmt: skip

"""Random pop-like compositions: chords, bass line, drum pattern and a sung-like lead.

A composition is plain data (notes in seconds), so it can be stored in the
manifest and rendered by `music.py`. Own code and choices (MIT).
"""

import numpy as np

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Chord progressions as scale degrees (I-V-vi-IV, vi-IV-I-V, ...).
PROGRESSIONS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 4), (0, 5, 1, 4),
                (0, 3, 0, 4), (1, 4, 0, 0), (0, 2, 3, 4))  # fmt: skip
BASS_PROGRAMS = (32, 33, 34, 35, 36, 38, 39)
OTHER_PROGRAMS = (0, 1, 4, 5, 16, 17, 19, 24, 25, 26, 27, 29, 30, 48, 49, 50, 61, 88, 89, 90)
VOCAL_PROGRAMS = (52, 53, 54, 85)  # Choir Aahs, Voice Oohs, Synth Vox, Solo Vox
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)  # GM percussion bank 128 presets of TimGM6mb
KICK, SNARE, HAT, OPEN_HAT, CRASH, TOMS = 36, 38, 42, 46, 49, (45, 47, 48, 50)
KICK_PATTERNS = ((0, 8), (0, 6, 8), (0, 8, 10), (0, 3, 8, 11), (0, 7, 10))  # in 16ths


def _chord(key: int, scale, degree: int) -> list[int]:
    """Triad on `degree` as pitch classes relative to C (root first)."""
    return [(key + scale[(degree + 2 * i) % 7] + 12 * ((degree + 2 * i) // 7)) for i in range(3)]


def _note(notes, start, dur, key, vel, rng):
    jitter = rng.normal(0, 0.004)  # a little human timing
    notes.append([round(max(0.0, start + jitter), 5), round(dur, 5), int(key),
                  int(np.clip(vel + rng.integers(-8, 9), 20, 127))])  # fmt: skip


def drum_part(rng, n_bars: int, beat: float, beats_per_bar: int = 4) -> list:
    """A drum pattern in 16ths: kick pattern, backbeat snare, hi-hats, fills and crashes.

    Four beats a bar: one of KICK_PATTERNS with the snare on beats 2 and 4. Other
    metres: the kick on beat 1 (and the middle beat of six), the snare on the others.
    """
    notes, steps = [], 4 * beats_per_bar
    if beats_per_bar == 4:
        kicks, snares = KICK_PATTERNS[int(rng.integers(len(KICK_PATTERNS)))], (4, 12)
    else:
        kicks = (0, steps // 2) if beats_per_bar == 6 else (0,)
        snares = tuple(4 * b for b in range(1, beats_per_bar) if 4 * b not in kicks)
    hat_step = int(rng.choice([1, 2, 2]))
    for bar in range(n_bars):
        t0 = bar * beats_per_bar * beat
        fill = bar % 4 == 3 and rng.random() < 0.5
        for s in range(steps):
            t = t0 + s * beat / 4
            if fill and s >= steps // 2:
                if s % 2 == 0:
                    _note(notes, t, beat / 4, TOMS[(steps - 1 - s) // 2 % 4], 100, rng)
                continue
            if s in kicks:
                _note(notes, t, beat / 4, KICK, 110, rng)
            if s in snares:
                _note(notes, t, beat / 4, SNARE, 105, rng)
            if s % hat_step == 0:
                hat = OPEN_HAT if s == steps - 2 and rng.random() < 0.3 else HAT
                _note(notes, t, beat / 4, hat, 90 if s % 4 == 0 else 65, rng)
        if bar % 4 == 0:
            _note(notes, t0, 2 * beat, CRASH, 95, rng)
    return notes


def _bass(rng, chords, beat, key):
    notes, style = [], int(rng.integers(3))
    base = 36 + key - (12 if key > 7 else 0)
    for bar, chord in enumerate(chords):
        t0, root = bar * 4 * beat, base + (chord[0] - key) % 12
        fifth = root + 7
        if style == 0:  # root on every beat
            steps = [(b, root, beat * 0.9) for b in range(4)]
        elif style == 1:  # root and fifth
            steps = [(0, root, 1.8 * beat), (2, fifth, 0.9 * beat), (3, root, 0.9 * beat)]
        else:  # driving eighths
            steps = [(b / 2, root + 12 * (b == 6), 0.45 * beat) for b in range(8)]
        for b, k, d in steps:
            _note(notes, t0 + b * beat, d, k, 100, rng)
    return notes


def _harmony(rng, chords, beat):
    notes, style = [], int(rng.integers(3))
    for bar, chord in enumerate(chords):
        t0 = bar * 4 * beat
        voicing = [60 + (p - 60) % 12 - (12 if (p % 12) > 7 else 0) for p in chord]
        if style == 0:  # sustained pad
            for k in voicing:
                _note(notes, t0, 4 * beat * 0.98, k, 70, rng)
        elif style == 1:  # rhythmic comping
            for b in (0, 1.5, 2.5, 3.5):
                for k in voicing:
                    _note(notes, t0 + b * beat, 0.45 * beat, k, 80, rng)
        else:  # eighth-note arpeggio
            for i in range(8):
                k = sorted(voicing)[[0, 1, 2, 1][i % 4]] + 12 * (i % 8 == 4)
                _note(notes, t0 + i * beat / 2, 0.5 * beat, k, 75, rng)
    return notes


def _melody(rng, chords, beat, key, scale):
    """Phrases of 1-2 bars, moving by steps, leaning on chord tones on strong beats."""
    notes, pitches = [], [key + 60 + s + 12 * o for o in (-1, 0, 1) for s in scale]
    pitches = [p for p in pitches if 57 <= p <= 79]
    # Time counted in half beats (integers) so that "strong beat" is exact.
    idx, h, end = len(pitches) // 2, 0, len(chords) * 8
    while h < end:
        phrase_end = min(end, h + 8 * int(rng.choice([1, 2])))
        while h < phrase_end:
            dur = int(rng.choice([1, 2, 2, 2, 3, 4]))
            chord = chords[min(h // 8, len(chords) - 1)]
            if h % 4 == 0:  # strong beat: nearest chord tone
                cands = [i for i, p in enumerate(pitches) if p % 12 in {c % 12 for c in chord}]
                idx = min(cands, key=lambda i: abs(i - idx))
            else:
                idx = int(np.clip(idx + rng.choice([-2, -1, -1, 1, 1, 2]), 0, len(pitches) - 1))
            _note(notes, h * beat / 2, 0.95 * min(dur, end - h) * beat / 2, pitches[idx], 95, rng)
            h += dur
        h += int(rng.choice([1, 2, 4]))  # breathe between phrases
    return notes


def compose(rng: np.random.Generator, duration: float, other_parts: int = 1) -> dict:
    """A track of at least `duration` seconds as data: global settings and four stems.

    `other_parts` > 1 gives the other stem that many harmony parts, each with its own
    instrument, pattern and panning.
    """
    tempo = int(rng.integers(80, 151))
    beat = 60.0 / tempo
    key, mode = int(rng.integers(12)), str(rng.choice(list(SCALES)))
    scale = SCALES[mode]
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    n_bars = int(np.ceil(duration / (4 * beat)))
    chords = [_chord(key, scale, prog[b % len(prog)]) for b in range(n_bars)]

    def pan(width):
        return round(float(rng.uniform(-width, width)), 3)

    stems = {
        "drums": {"program": int(rng.choice(DRUM_KITS)), "drums": True, "pan": pan(0.1),
                  "notes": drum_part(rng, n_bars, beat)},
        "bass": {"program": int(rng.choice(BASS_PROGRAMS)), "drums": False, "pan": pan(0.1),
                 "notes": _bass(rng, chords, beat, key)},
        "other": {"program": int(rng.choice(OTHER_PROGRAMS)), "drums": False,
                  "pan": pan(0.6), "notes": _harmony(rng, chords, beat)},
        "vocals": {"program": int(rng.choice(VOCAL_PROGRAMS)), "drums": False,
                   "pan": pan(0.15), "notes": _melody(rng, chords, beat, key, scale)},
    }  # fmt: skip
    if other_parts > 1:
        first = {k: stems["other"].pop(k) for k in ("program", "pan", "notes")}
        stems["other"]["parts"] = [first] + [
            {"program": int(rng.choice(OTHER_PROGRAMS)), "pan": pan(0.8),
             "notes": _harmony(rng, chords, beat)} for _ in range(other_parts - 1)]  # fmt: skip
    for stem in stems.values():
        stem["gain_db"] = round(float(rng.uniform(-4, 2)), 2)
        stem["reverb"] = round(float(rng.uniform(0.05, 0.3)), 3)
    return {"tempo": tempo, "key": key, "mode": mode, "progression": list(prog), "stems": stems}

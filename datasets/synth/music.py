"""Render a composition to stereo stems with TinySoundFont and a General MIDI soundfont.

Each stem is rendered on its own (all voices of the synthesizer stopped between
stems), so the stems are separate signals and their sum is the mixture. A stem
may hold several parts, each with its own instrument, panning and notes. The
soundfont is TimGM6mb (shipped with pretty_midi) unless a path is given.
Rendering is offline into numpy (no audio device).
"""

import os
from functools import lru_cache

import numpy as np
from scipy import fft

MUSIC_FS = 44100
_BLOCK = 512  # pitch-bend update period for the vocal vibrato (about 12 ms)
_VOCAL_CHANNEL, _DRUM_CHANNEL = 0, 9
_FLUSH = 8192  # samples rendered and dropped after stopping all voices


def soundfont_path() -> str:
    import pretty_midi

    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


@lru_cache(maxsize=4)
def _synth(path: str, fs: int):
    """One synthesizer per soundfont and rate, per process (loading a large one takes s)."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=fs)
    with open(path, "rb") as f:
        sfid = synth.sfload(f.read())
    return synth, sfid


def _events(stem: dict, fs: int, n: int, vibrato: bool) -> list[tuple]:
    """(sample, order, kind, a, b) sorted; note-offs sort before note-ons."""
    ev = []
    for start, dur, key, vel in stem["notes"]:
        on = int(round(start * fs))
        if on < n:
            ev.append((on, 1, "on", key, vel))
            ev.append((min(n, int(round((start + dur) * fs))), 0, "off", key, 0))
    if vibrato:  # 5.5 Hz, +-0.25 semitone with the default +-2 semitone bend range
        for s in range(0, n, _BLOCK):
            ev.append((s, 2, "bend", int(8192 + 1024 * np.sin(2 * np.pi * 5.5 * s / fs)), 0))
    return sorted(ev)


def _silence(synth) -> None:
    """Stop every voice and render their quick release away: the next part starts clean."""
    synth.sounds_off()
    synth.generate(_FLUSH)


def _select(synth, sfid: int, stem: dict) -> None:
    """The stem's program on its channel; a program the soundfont lacks falls back to 0."""
    ch, drums = (_DRUM_CHANNEL, True) if stem["drums"] else (_VOCAL_CHANNEL, False)
    for program in (stem["program"], 0):
        try:
            synth.program_select(ch, sfid, 128 if drums else 0, program, drums)
            return
        except RuntimeError:
            continue
    raise RuntimeError(f"the soundfont has neither program {stem['program']} nor 0")


def parts_of(stem: dict) -> list[dict]:
    """The parts of a stem: its "parts" list, or the stem itself as one part."""
    if "parts" not in stem:
        return [stem]
    shared = {k: v for k, v in stem.items() if k != "parts"}
    return [{**shared, **part} for part in stem["parts"]]


def render_part(stem: dict, duration: float, fs: int = MUSIC_FS, soundfont: str | None = None):
    """Dry stereo float64 (n, 2) rendering of one part (program, notes, pan)."""
    n = int(round(duration * fs))
    synth, sfid = _synth(soundfont or soundfont_path(), fs)
    _silence(synth)
    ch = _DRUM_CHANNEL if stem["drums"] else _VOCAL_CHANNEL
    _select(synth, sfid, stem)
    synth.pitchbend(ch, 8192)
    parts, pos = [], 0
    for at, _, kind, a, b in _events(stem, fs, n, vibrato=stem.get("vibrato", False)):
        if at > pos:
            parts.append(np.frombuffer(synth.generate(at - pos), dtype=np.float32))
            pos = at
        if kind == "on":
            synth.noteon(ch, a, b)
        elif kind == "off":
            synth.noteoff(ch, a)
        else:
            synth.pitchbend(ch, a)
    if n > pos:
        parts.append(np.frombuffer(synth.generate(n - pos), dtype=np.float32))
    x = np.concatenate(parts).reshape(-1, 2).astype(np.float64)
    return x * pan_gains(stem["pan"])


def pan_gains(pan: float) -> np.ndarray:
    """Constant-power (left, right) gains for pan in [-1, 1]; centre (0) is (1, 1)."""
    angle = (pan + 1) * np.pi / 4
    return np.sqrt(2) * np.array([np.cos(angle), np.sin(angle)])


def render_stem(stem: dict, duration: float, fs: int = MUSIC_FS, soundfont: str | None = None):
    """Dry stereo float64 (n, 2): the sum of the stem's parts, each panned."""
    return sum(render_part(p, duration, fs, soundfont) for p in parts_of(stem))


def reverb_ir(rng: np.random.Generator, fs: int, seconds: float = 1.2) -> np.ndarray:
    """A decaying stereo noise tail: a cheap room so stems do not sound bone dry."""
    t = np.arange(int(seconds * fs)) / fs
    rt60 = rng.uniform(0.4, 1.1)
    ir = rng.standard_normal((t.size, 2)) * np.exp(-6.9 * t / rt60)[:, None]
    return ir / np.sqrt(np.sum(ir**2, axis=0))


def render_track(
    comp: dict, duration: float, rng: np.random.Generator, fs: int = MUSIC_FS,
    soundfont: str | None = None, dry: dict | None = None,
):
    """All stems (float64, (n, 2)) at their levels, with a shared room; no peak control.

    `dry` maps stem names to dry (n, 2) signals that replace the soundfont's rendering
    of those stems (the recorded-voice vocals of `datasets.music.singing`).
    """
    ir = reverb_ir(rng, fs)
    n = int(round(duration * fs))
    n_fft = fft.next_fast_len(n + ir.shape[0] - 1, real=True)
    # One transform of the room shared by the stems; single precision halves the cost.
    room = fft.rfft(ir.astype(np.float32), n_fft, axis=0)
    stems = {}
    for name, stem in comp["stems"].items():
        if dry and name in dry:
            x = np.asarray(dry[name], np.float64)
        else:
            x = render_stem({**stem, "vibrato": name == "vocals"}, duration, fs, soundfont)
        level = np.sqrt(np.mean(x**2)) + 1e-12
        x = x * 10 ** ((-20 + stem["gain_db"]) / 20) / level  # -20 dBFS RMS + gain
        wet = fft.irfft(fft.rfft(x.astype(np.float32), n_fft, axis=0) * room, n_fft, axis=0)[:n]
        stems[name] = (1 - stem["reverb"]) * x + stem["reverb"] * wet
    return stems

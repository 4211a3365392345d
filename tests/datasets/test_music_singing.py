"""Recorded voices pitched to a melody (datasets.music.singing), on known tones."""

import numpy as np
import pytest

from datasets.music.singing import estimate_f0, midi_hz, note_ratio, pitch_shift, sing


def harmonic(f0: float, seconds: float, fs: int, amps=(1.0, 0.6, 0.4, 0.3, 0.2)) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return 0.2 * sum(a * np.sin(2 * np.pi * (h + 1) * f0 * t + h) for h, a in enumerate(amps))


@pytest.mark.parametrize("fs", [16000, 44100])
@pytest.mark.parametrize("f0", [72.0, 110.0, 157.0, 233.0, 410.0])
def test_f0_of_harmonic_tones(f0, fs):
    assert estimate_f0(harmonic(f0, 0.5, fs), fs) == pytest.approx(f0, rel=0.005)


def test_f0_is_not_fooled_by_a_strong_second_harmonic():
    x = harmonic(120.0, 0.5, 16000, amps=(0.3, 1.0, 0.5))
    assert estimate_f0(x, 16000) == pytest.approx(120.0, rel=0.005)


def test_noise_silence_and_short_input_have_no_f0():
    rng = np.random.default_rng(0)
    assert estimate_f0(0.1 * rng.standard_normal(16000), 16000) is None
    assert estimate_f0(np.zeros(16000), 16000) is None
    assert estimate_f0(harmonic(150.0, 0.02, 16000), 16000) is None


def test_pitch_shift_scales_pitch_up_and_length_down():
    fs, ratio = 16000, 1.25
    x = harmonic(200.0, 1.0, fs)
    y = pitch_shift(x, ratio)
    assert abs(y.size - x.size / ratio) <= 2
    assert estimate_f0(y, fs) == pytest.approx(250.0, rel=0.005)


@pytest.mark.parametrize("f0", [85.0, 130.0, 260.0])
@pytest.mark.parametrize("key", [48, 55, 61, 67, 72, 79])
def test_note_ratio_keeps_the_pitch_class_within_half_an_octave(f0, key):
    assert midi_hz(69) == 440.0 and midi_hz(60) == pytest.approx(261.6256, abs=1e-4)
    r = note_ratio(f0, key)
    assert 2**-0.5 - 1e-9 <= r <= 2**0.5 + 1e-9
    octaves = np.log2(f0 * r / midi_hz(key))
    assert octaves == pytest.approx(round(octaves), abs=1e-9)


def test_sung_notes_sound_at_the_melody_pitch_classes_and_rest_between():
    fs, duration = 16000, 3.0
    syllables = [(harmonic(118.0, 0.6, fs), 118.0), (harmonic(205.0, 0.6, fs), 205.0)]
    notes = [[0.2, 0.4, 60, 100], [1.0, 0.4, 64, 80], [1.8, 0.4, 69, 127]]
    y = sing(notes, syllables, duration, fs, np.random.default_rng(3))
    assert y.shape == (int(duration * fs),)
    for start, length, key, _ in notes:
        seg = y[int((start + 0.05) * fs) : int((start + length - 0.05) * fs)]
        octaves = np.log2(estimate_f0(seg, fs) / midi_hz(key))
        assert octaves == pytest.approx(round(octaves), abs=0.01), (key, octaves)
    ends = [start + length for start, length, _, _ in notes]
    starts = [start for start, _, _, _ in notes[1:]] + [duration]
    for end, nxt in zip(ends, starts):  # silent from the release's end to the next note
        assert np.all(y[int((end + 0.05) * fs) : int(nxt * fs)] == 0)
    loud = [np.abs(y[int(s * fs) : int((s + n) * fs)]).max() for s, n, _, _ in notes]
    assert loud[2] > loud[1]  # velocity 127 above velocity 80

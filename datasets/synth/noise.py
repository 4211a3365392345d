"""Background noises for the enhancement corpus (own generators, MIT).

Each generator returns `n` samples at `fs` Hz; the level is set later from
the SNR, so only the shape of the noise matters here.
"""

import numpy as np
from scipy import signal


def _shaped(rng, n: int, fs: int, exponent: float, f_low: float = 20.0) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1 / f**exponent above `f_low` Hz."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spec *= np.maximum(f, f_low) ** (-exponent / 2)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def white(rng, n, fs):
    return rng.standard_normal(n)


def pink(rng, n, fs):
    return _shaped(rng, n, fs, 1.0)


def brown(rng, n, fs):
    return _shaped(rng, n, fs, 2.0)


def hum(rng, n, fs):
    """Mains hum: 50 or 60 Hz with decaying, randomly weighted harmonics."""
    t = np.arange(n) / fs
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    x = np.zeros(n)
    for h in range(1, 10):
        if h * f0 < fs / 2:
            amp = rng.uniform(0.2, 1.0) / h ** rng.uniform(0.5, 1.5)
            x += amp * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
    return x / x.std() + 0.03 * rng.standard_normal(n)


def am_noise(rng, n, fs):
    """Pink noise whose level swings slowly (fans, wind, machinery)."""
    t = np.arange(n) / fs
    fm, depth = rng.uniform(0.3, 4.0), rng.uniform(0.5, 0.95)
    return pink(rng, n, fs) * (1 + depth * np.sin(2 * np.pi * fm * t + rng.uniform(0, 6.3)))


def clicks(rng, n, fs):
    """Sparse short clicks (keyboard, cutlery) over a faint hiss."""
    x = 0.01 * rng.standard_normal(n)
    n_clicks = rng.poisson(rng.uniform(2, 10) * n / fs) + 1
    for start in rng.integers(0, n, n_clicks):
        m = int(fs * rng.uniform(0.001, 0.006))
        burst = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.25 * m))
        stop = min(n, start + m)
        x[start:stop] += rng.uniform(0.3, 1.0) * burst[: stop - start]
    return x


def knocks(rng, n, fs):
    """Door-knock-like groups of damped low resonances over faint pink noise."""
    bed = pink(rng, n, fs)
    x = 0.02 * bed / bed.std()
    m = int(0.12 * fs)
    tk = np.arange(m) / fs
    pos = rng.uniform(0, 0.5) * fs
    while pos < n:
        freqs, decay = rng.uniform(90, 400, 3), rng.uniform(0.015, 0.05)
        for _ in range(int(rng.integers(2, 5))):
            knock = sum(np.sin(2 * np.pi * f * tk + rng.uniform(0, 6.3)) for f in freqs)
            knock = knock * np.exp(-tk / decay)
            knock[: int(0.002 * fs)] += rng.standard_normal(int(0.002 * fs))
            start = int(pos)
            stop = min(n, start + m)
            x[start:stop] += rng.uniform(0.5, 1.0) * knock[: stop - start]
            pos += rng.uniform(0.15, 0.3) * fs
        pos += rng.uniform(0.8, 2.5) * fs
    return x


def traffic(rng, n, fs):
    """Low-passed rumble with the swells of passing vehicles."""
    sos = signal.butter(4, rng.uniform(250, 800), "low", fs=fs, output="sos")
    rumble = signal.sosfilt(sos, brown(rng, n, fs) + 0.3 * pink(rng, n, fs))
    t = np.arange(n) / fs
    env = np.full(n, 0.3)
    for centre in rng.uniform(-2, t[-1] + 2, rng.integers(1, 4) + int(t[-1] / 3)):
        env += np.exp(-0.5 * ((t - centre) / rng.uniform(0.7, 2.0)) ** 2)
    return rumble * env


def beeps(rng, n, fs):
    """Periodic tonal beeps (alarms, appliances) over a faint hiss."""
    x = 0.01 * rng.standard_normal(n)
    f1, f2 = rng.uniform(400, 2500, 2)
    dur, period = rng.uniform(0.08, 0.4), rng.uniform(0.4, 1.5)
    m = int(dur * fs)
    tb = np.arange(m) / fs
    ramp = np.minimum(1.0, np.minimum(tb, tb[::-1]) / 0.01)  # 10 ms fades
    pos, k = rng.uniform(0, period) * fs, 0
    while pos < n:
        start = int(pos)
        stop = min(n, start + m)
        tone = np.sin(2 * np.pi * (f1 if k % 2 == 0 else f2) * tb) * ramp
        x[start:stop] += tone[: stop - start]
        pos, k = pos + period * fs, k + 1
    return x


def babble(rng, n, utterances) -> np.ndarray:
    """Several talkers: each utterance (unit RMS) tiled over `n` from a random offset."""
    x = np.zeros(n)
    for u in utterances:
        reps = int(np.ceil((n + u.size) / u.size))
        tiled = np.tile(u, reps)
        off = int(rng.integers(0, u.size))
        x += rng.uniform(0.5, 1.0) * tiled[off : off + n]
    return x


GENERATORS = {
    "white": white, "pink": pink, "brown": brown, "hum": hum, "am_noise": am_noise,
    "clicks": clicks, "knocks": knocks, "traffic": traffic, "beeps": beeps,
}  # fmt: skip
NOISE_TYPES = tuple(sorted([*GENERATORS, "babble"]))
TRAIN_NOISES = ("babble", "beeps", "brown", "clicks", "hum", "white")
TEST_NOISES = ("am_noise", "knocks", "pink", "traffic")

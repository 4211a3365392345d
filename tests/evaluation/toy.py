"""Test helpers: speech-like toy corpora and a fake separator with the model's API."""

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def speech_like(n, fs, seed):
    """Bursty harmonic signal with a random pitch: PESQ and ESTOI accept it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    rate = rng.uniform(2.0, 4.0)
    env = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)), 0, None) ** 0.5
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 0.8 * t))
    phase = 2 * np.pi * np.cumsum(f0) / fs
    sig = sum(np.sin(h * phase + rng.uniform(0, 6)) / h for h in range(1, 10)) * env
    return (0.2 * sig + 1e-3 * rng.standard_normal(n)).astype(np.float32)


def toy_items(n_items, n_sources, fs=8000, seconds=(0.8, 1.1), seed=0):
    """List of (mix (1, L), tgt (K, L)) with varied lengths."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_items):
        n = int(fs * rng.uniform(*seconds))
        tgt = np.stack([speech_like(n, fs, 100 * i + k) for k in range(n_sources)])
        items.append((torch.from_numpy(tgt.sum(0, keepdims=True)), torch.from_numpy(tgt)))
    return items


class ToyMix(torch.utils.data.Dataset):
    """In-memory dataset with the loaders' attributes; `broken` indices raise."""

    def __init__(self, items, fs=8000, broken=()):
        self.items, self.fs, self.broken = items, fs, set(broken)
        self.n_sources = items[0][1].shape[0]
        self.source_names = [f"s{k + 1}" for k in range(self.n_sources)]
        self.names = [f"utt{i:02d}" for i in range(len(items))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if i in self.broken:
            raise OSError(f"cannot read utt{i:02d}")
        return self.items[i]


class FakeOracle:
    """Separator with the DiffSepModel.separate API that knows the answers.

    It returns the references of the matching mixture in a rotated order plus
    noise drawn from `generator`, so results depend on the seed; `nan_for` gives
    a diverged (NaN) estimate, `fail_for` raises. Every call's options are kept.
    """

    def __init__(self, items, fs=8000, rotate=1, noise=0.05, nan_for=(), fail_for=()):
        self.items, self.fs, self.rotate, self.noise = items, fs, rotate, noise
        self.n_sources = items[0][1].shape[0]
        self.source_names = [f"s{k + 1}" for k in range(self.n_sources)]
        self.config, self.exp_name = None, "fake"
        self.nan_for, self.fail_for = set(nan_for), set(fail_for)
        self.calls = []

    def _lookup(self, mix):
        for i, (m, t) in enumerate(self.items):
            if m.shape == mix.shape[1:] and torch.equal(m, mix[0]):
                return i, t
        raise KeyError("unknown mixture")

    def separate(self, mix, N=None, snr=None, corrector_steps=None, denoise=None,
                 schedule=None, intermediate=False, generator=None, **_):
        self.calls.append(dict(N=N, snr=snr, corrector_steps=corrector_steps, denoise=denoise,
                               schedule=schedule, intermediate=intermediate))
        i, tgt = self._lookup(mix)
        if i in self.fail_for:
            raise RuntimeError("sampler exploded")
        order = torch.roll(torch.arange(self.n_sources), self.rotate)
        z = torch.randn(tgt.shape, generator=generator)
        est = (tgt[order] + self.noise * z * tgt.std())[None]
        if i in self.nan_for:
            est[0, 0, 10:20] = float("nan")
        inter = None
        if intermediate:
            start = mix.expand_as(est) / self.n_sources
            inter = [(t, t * start + (1 - t) * est) for t in np.linspace(1.0, 0.0, N)]
        return est, N * (1 + corrector_steps), inter


def write_wsj0(root, items, fs=8000, split="tt", n_sources=2):
    """Write `items` in the WSJ0-mix layout of the seed README."""
    base = Path(root) / f"{n_sources}speakers" / f"wav{fs // 1000}k" / "min" / split
    for i, (mix, tgt) in enumerate(items):
        name = f"utt{i:02d}.wav"
        for sub, sig in [("mix", mix[0])] + [(f"s{k + 1}", tgt[k]) for k in range(n_sources)]:
            (base / sub).mkdir(parents=True, exist_ok=True)
            sf.write(base / sub / name, sig.numpy(), fs, subtype="FLOAT")
    return base


def assert_same_records(a, b, rel=1e-9):
    """Records equal apart from timing fields; floats to `rel` (pystoi's sums vary in
    the last bits with memory alignment, so bit equality is not a property we have)."""
    from evaluation.results import strip_timing

    def close(x, y):
        if isinstance(x, float) and isinstance(y, float):
            return abs(x - y) <= rel * max(abs(x), abs(y), 1e-12)
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(close(u, v) for u, v in zip(x, y))
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        return x == y

    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        ra, rb = strip_timing(ra), strip_timing(rb)
        diff = {k: (ra.get(k), rb.get(k)) for k in ra.keys() | rb.keys()
                if not close(ra.get(k), rb.get(k))}
        assert not diff, f"record {ra.get('index')} differs: {diff}"


def read_results(folder, split="test"):
    """``({split}.json records, {split}_summary.json)`` of a result folder."""
    with open(Path(folder) / f"{split}.json") as f, \
            open(Path(folder) / f"{split}_summary.json") as g:
        return json.load(f), json.load(g)


def single_thread(fn, *args):
    """``fn(*args)`` with one torch thread.

    evaluate_mp gives each of 2 workers 1 thread on this 2-core machine; with the same
    thread count the convolutions sum in the same order and records are comparable.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(n)

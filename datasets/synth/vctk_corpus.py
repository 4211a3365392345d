"""Noisy speech in the VoiceBank-DEMAND (VCTK_DEMAND) folder layout.

`{out}/{train,test}/{clean,noisy}/<speaker>_<index>.wav`, 16 kHz float32.
Clean speech comes from the tr speakers (train) or tt speakers (test), so the
two splits share no speaker, and the noise types of the two splits are
disjoint, as in VoiceBank-DEMAND. SNR = 10 log10(sum clean^2 / sum noise^2)
over the whole file; noisy = clean + noise as a float32 sum.
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from datasets.synth import manifest as mf
from datasets.synth import noise as nz
from datasets.synth.runner import item_rng, run_items
from datasets.synth.speakers import speakers_of_split
from datasets.synth.speech import plan_utterance, render_utterance
from datasets.synth.wavio import write_wav

SPLITS = ("train", "test")
SNRS = {"train": (0.0, 5.0, 10.0, 15.0), "test": (2.5, 7.5, 12.5, 17.5)}
LEVEL_DB = (-32.0, -22.0)  # clean RMS range in dBFS
PEAK = 0.95


@dataclass(frozen=True)
class EnhOptions:
    root: str
    seed: int
    fs: int
    noises: dict  # split -> tuple of noise types
    snrs: dict  # split -> tuple of SNRs in dB
    words: tuple[int, int]
    max_seconds: float | None
    backend: str
    overwrite: bool


def plan_noisy(opts: EnhOptions, split: str, index: int) -> dict:
    """All random choices of one noisy utterance (cheap: no synthesis)."""
    rng = item_rng(opts.seed, "vctk_demand", split, index)
    pool = speakers_of_split(split)
    spk = pool[int(rng.integers(len(pool)))]
    utt = plan_utterance(rng, spk, opts.words)
    noise_type = str(rng.choice(opts.noises[split]))
    talkers = []
    if noise_type == "babble":
        others = [s for s in pool if s.id != spk.id]
        chosen = rng.choice(len(others), int(rng.integers(4, 7)), replace=False)
        talkers = [plan_utterance(rng, others[i], opts.words) for i in chosen]
    return {
        "name": f"{spk.id}_{index:05d}",
        "utterance": utt,
        "level_db": round(float(rng.uniform(*LEVEL_DB)), 3),
        "noise": noise_type,
        "snr_db": float(rng.choice(opts.snrs[split])),
        "noise_seed": int(rng.integers(2**31)),
        "babble": talkers,
    }


def make_item(opts: EnhOptions, key: tuple[str, int]) -> dict:
    """Render and write one (clean, noisy) pair; returns its metadata."""
    split, index = key
    plan = plan_noisy(opts, split, index)
    meta = {k: v for k, v in plan.items() if k not in ("utterance", "babble")}
    meta["utterance"] = plan["utterance"].as_dict()
    meta["babble"] = [u.speaker.id for u in plan["babble"]]
    base = Path(opts.root) / split
    paths = {d: base / d / f"{plan['name']}.wav" for d in ("clean", "noisy")}
    if not opts.overwrite and all(p.exists() for p in paths.values()):
        return meta
    fs = opts.fs
    clean = render_utterance(plan["utterance"], [fs], opts.max_seconds, opts.backend)[fs]
    clean = clean * 10 ** (plan["level_db"] / 20)
    rng = np.random.default_rng(plan["noise_seed"])
    if plan["noise"] == "babble":
        talk = [render_utterance(u, [fs], opts.max_seconds, opts.backend)[fs]
                for u in plan["babble"]]  # fmt: skip
        noise = nz.babble(rng, clean.size, talk)
    else:
        noise = nz.GENERATORS[plan["noise"]](rng, clean.size, fs)
    noise *= np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (plan["snr_db"] / 10))
    gain = min(1.0, PEAK / np.abs(clean + noise).max())
    clean32 = (clean * gain).astype(np.float32)
    noisy32 = clean32 + (noise * gain).astype(np.float32)
    write_wav(paths["clean"], clean32, fs)
    write_wav(paths["noisy"], noisy32, fs)  # last: a complete item has its noisy file
    return meta


def generate_vctk_demand(
    out: str | Path = "data/synth/VCTK_DEMAND",
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    fs: int = 16000,
    train_noises=nz.TRAIN_NOISES,
    test_noises=nz.TEST_NOISES,
    words: tuple[int, int] = (5, 12),
    max_seconds: float | None = None,
    workers: int = 1,
    overwrite: bool = False,
    backend: str = "library",
    progress: bool = True,
) -> Path:
    """Generate (or complete) the enhancement corpus; returns the manifest path."""
    sizes = dict(sizes or {"train": 100, "test": 20})
    noises = {"train": tuple(train_noises), "test": tuple(test_noises)}
    unknown = set(noises["train"] + noises["test"]) - set(nz.NOISE_TYPES)
    if unknown or set(noises["train"]) & set(noises["test"]):
        raise ValueError(f"noise types must be known and disjoint: {noises}")
    root = Path(out)
    params = {"seed": seed, "fs": fs, "sizes": sizes, "noises": noises, "snrs": SNRS,
              "words": list(words), "max_seconds": max_seconds, "backend": backend}  # fmt: skip
    mf.prepare_root(root, params, overwrite)
    opts = EnhOptions(str(root), seed, fs, noises, SNRS, tuple(words), max_seconds, backend,
                      overwrite)  # fmt: skip
    keys = [(split, i) for split in SPLITS for i in range(sizes.get(split, 0))]
    metas = run_items(partial(make_item, opts), keys, workers, "VCTK_DEMAND", progress)
    return mf.write_manifest(root, {
        "generator": mf.GENERATOR,
        "corpus": "synthetic VoiceBank-DEMAND",
        "params": params,
        "conventions": __doc__.split("\n\n", 1)[1].strip(),
        "noise_types": noises,
        "licences": {"speech": mf.LICENCES["speech"], "noise": mf.LICENCES["noise"],
                     "corpus": mf.LICENCES["corpus"]},  # fmt: skip
        "items": {s: [m for (sp, _), m in zip(keys, metas) if sp == s] for s in SPLITS},
    })  # fmt: skip

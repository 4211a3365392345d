"""Speech mixtures in the WSJ0-2mix / WSJ0-3mix folder layout.

`{out}/{K}speakers/wav{8,16}k/{min,max}/{tr,cv,tt}/{mix,s1,..,sK}/<name>.wav`

See LEVEL_CONVENTION for levels, cuts and number format.
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from datasets.synth import manifest as mf
from datasets.synth.runner import item_rng, run_items
from datasets.synth.speakers import speakers_of_split
from datasets.synth.speech import plan_utterance, render_utterance
from datasets.synth.wavio import write_wav

SPLITS = ("tr", "cv", "tt")
TARGET_DB = -25.0
MAX_REL_DB = 5.0
PEAK = 0.9
LEVEL_CONVENTION = (
    "As WSJ0-mix: every utterance is first brought to the same RMS (-25 dBFS, over the "
    "whole utterance at that sample rate); source 1 stays at 0 dB and source k >= 2 is "
    "attenuated by x_k ~ U(0, 5) dB (levels_db = [0, -x_2, ...]). All sources start at "
    "sample 0; 'max' zero-pads to the longest source, 'min' truncates to the shortest "
    "(min files are a prefix of max files). One gain per item and rate keeps the peak of "
    "the mixture and of every source below 0.9. Files are float32 WAV and the mixture is "
    "the float32 sum s1 + s2 (+ s3) of the written sources."
)


@dataclass(frozen=True)
class MixOptions:
    root: str  # {out}/{K}speakers
    seed: int
    n_sources: int
    fs: tuple[int, ...]
    cuts: tuple[str, ...]
    words: tuple[int, int]
    max_seconds: float | None
    backend: str
    overwrite: bool


def plan_mix(seed: int, n_sources: int, split: str, index: int, words=(5, 12)) -> dict:
    """All random choices of one mixture (cheap: no synthesis)."""
    rng = item_rng(seed, "wsj0mix", n_sources, split, index)
    pool = speakers_of_split(split)
    chosen = rng.choice(len(pool), n_sources, replace=False)
    utts = [plan_utterance(rng, pool[i], words) for i in chosen]
    levels = [0.0] + [round(-float(rng.uniform(0, MAX_REL_DB)), 4) for _ in range(n_sources - 1)]
    name = "_".join(
        f"{u.speaker.id}-{split}{index:05d}_{lvl:.4f}" for u, lvl in zip(utts, levels)
    )
    return {"name": name, "utterances": utts, "levels_db": levels}


def item_paths(root: str | Path, fs: int, cut: str, split: str, n_sources: int, name: str):
    """{folder: path} of one item: "mix", "s1", ..."""
    base = Path(root) / f"wav{fs // 1000}k" / cut / split
    folders = ["mix"] + [f"s{k + 1}" for k in range(n_sources)]
    return {d: base / d / f"{name}.wav" for d in folders}


def write_mixture(paths: dict, audio: list[dict], levels_db, fs_list, cuts) -> None:
    """Write one mixture and its sources at every rate and cut (LEVEL_CONVENTION).

    `paths[(fs, cut)]` is `item_paths(...)` of that rate and cut; `audio[k][fs]` is
    source k at rate fs with unit RMS; `levels_db[k]` its level relative to -25 dBFS.
    """
    n_sources = len(audio)
    for fs in fs_list:
        lengths = [a[fs].size for a in audio]
        srcs = np.zeros((n_sources, max(lengths)))
        for k, (a, lvl) in enumerate(zip(audio, levels_db)):
            srcs[k, : lengths[k]] = a[fs] * 10 ** ((TARGET_DB + lvl) / 20)
        peak = max(np.abs(srcs).max(), np.abs(srcs.sum(0)).max())
        srcs = (srcs * min(1.0, PEAK / peak)).astype(np.float32)
        mix = srcs[0].copy()
        for k in range(1, n_sources):
            mix += srcs[k]  # float32 sum in file order: the loader's sum matches
        for cut in cuts:
            n = min(lengths) if cut == "min" else max(lengths)
            p = paths[(fs, cut)]
            for k in range(n_sources):
                write_wav(p[f"s{k + 1}"], srcs[k, :n], fs)
            write_wav(p["mix"], mix[:n], fs)  # last: a complete item has its mixture


def make_item(opts: MixOptions, key: tuple[str, int]) -> dict:
    """Render and write one mixture at every rate and cut; returns its metadata."""
    split, index = key
    plan = plan_mix(opts.seed, opts.n_sources, split, index, opts.words)
    meta = {"name": plan["name"], "levels_db": plan["levels_db"],
            "utterances": [u.as_dict() for u in plan["utterances"]]}  # fmt: skip
    paths = {
        (fs, cut): item_paths(opts.root, fs, cut, split, opts.n_sources, plan["name"])
        for fs in opts.fs
        for cut in opts.cuts
    }
    if not opts.overwrite and all(p.exists() for d in paths.values() for p in d.values()):
        return meta
    audio = [
        render_utterance(u, opts.fs, opts.max_seconds, opts.backend) for u in plan["utterances"]
    ]
    write_mixture(paths, audio, plan["levels_db"], opts.fs, opts.cuts)
    return meta


def generate_wsj0mix(
    out: str | Path = "data/synth/wsj0_mix",
    n_sources: int = 2,
    fs=(8000,),
    cuts=("min",),
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    words: tuple[int, int] = (5, 12),
    max_seconds: float | None = None,
    workers: int = 1,
    overwrite: bool = False,
    backend: str = "library",
    progress: bool = True,
) -> Path:
    """Generate (or complete) `{out}/{n_sources}speakers`; returns the manifest path."""
    sizes = dict(sizes or {"tr": 100, "cv": 10, "tt": 10})
    fs, cuts = tuple(sorted(set(fs))), tuple(sorted(set(cuts)))
    if not set(cuts) <= {"min", "max"} or not set(sizes) <= set(SPLITS):
        raise ValueError(f"cuts must be min/max and splits tr/cv/tt, got {cuts}, {sizes}")
    root = Path(out) / f"{n_sources}speakers"
    params = {"seed": seed, mf.N_SOURCES_PARAM: n_sources, "sizes": sizes, "words": list(words),
              "max_seconds": max_seconds, "backend": backend}  # fmt: skip
    old = mf.prepare_root(root, params, overwrite)
    opts = MixOptions(str(root), seed, n_sources, fs, cuts, tuple(words), max_seconds, backend,
                      overwrite)  # fmt: skip
    keys = [(split, i) for split in SPLITS for i in range(sizes.get(split, 0))]
    metas = run_items(partial(make_item, opts), keys, workers, f"{n_sources}speakers", progress)
    outputs = {f"wav{f // 1000}k/{c}" for f in fs for c in cuts}
    if old is not None:
        outputs |= set(old.get("outputs", []))
    items = {s: [m for (sp, _), m in zip(keys, metas) if sp == s] for s in SPLITS}
    return mf.write_manifest(root, {
        "generator": mf.GENERATOR,
        "corpus": f"synthetic WSJ0-{n_sources}mix",
        "params": params,
        "outputs": sorted(outputs),
        "levels": LEVEL_CONVENTION,
        "n_speakers_available": {s: len(speakers_of_split(s)) for s in SPLITS},
        "licences": {"speech": mf.LICENCES["speech"], "corpus": mf.LICENCES["corpus"]},
        "items": items,
    })  # fmt: skip

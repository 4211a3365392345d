"""Recorded-voice mixtures in the WSJ0-2mix / WSJ0-3mix layout.

`{out}/{K}speakers/wav{8,16}k/{min,max}/{tr,cv,tt}/{mix,s1,..,sK}/<name>.wav`, with the
generated corpus's mixing recipe (`datasets.synth.wsj0mix_corpus.LEVEL_CONVENTION`)
and manifest. Each source is one speaker's recordings, silence-trimmed, joined in a
random order with short pauses up to a random length; the K speakers of a mixture are
distinct and all from the same split.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

from datasets.audio import resample
from datasets.synth import manifest as mf
from datasets.synth.runner import item_rng, run_items
from datasets.synth.wsj0mix_corpus import LEVEL_CONVENTION, MAX_REL_DB, item_paths, write_mixture
from datasets.voices.packages import PACKAGES, prepare_packages
from datasets.voices.speakers import SPLITS, assign_splits, speaker_of

GENERATOR = "datasets.voices"
MIN_SPEAKER_SECONDS = 8.0  # less audio than this is too little to join into sources
MIN_UTTERANCE_SECONDS = 0.15
TRIM_DB = 40.0  # frames this far below the loudest 20-ms frame count as silence
FADE_S = 0.01


@dataclass(frozen=True)
class Recording:
    package: str
    relpath: str
    path: Path


def inventory(trees: dict[str, Path]) -> tuple[dict[str, list[Recording]], dict]:
    """Recordings per speaker, byte-identical duplicates removed; and counts."""
    per_speaker: dict[str, list[Recording]] = defaultdict(list)
    seen: set[str] = set()
    counts = {"duplicates": 0, "unidentified": 0}
    for name in sorted(trees):
        root = trees[name]
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            spk = speaker_of(name, rel)
            if spk is None:
                if path.suffix.lower() in (".ogg", ".wav", ".opus", ".flac"):
                    counts["unidentified"] += 1
                continue
            digest = hashlib.sha1(path.read_bytes()).hexdigest()
            if digest in seen:
                counts["duplicates"] += 1
                continue
            seen.add(digest)
            per_speaker[spk].append(Recording(name, rel, path))
    return dict(per_speaker), counts


def trim_silence(x: np.ndarray, fs: int, margin_s: float = 0.05) -> np.ndarray:
    """Cut leading and trailing silence (20-ms frames TRIM_DB below the loudest)."""
    hop = max(1, int(0.02 * fs))
    n = x.size // hop
    if n == 0:
        return x[:0]
    frames = x[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = np.flatnonzero(db > max(db.max() - TRIM_DB, -70.0))
    if active.size == 0:
        return x[:0]
    margin = int(margin_s * fs)
    return x[max(0, active[0] * hop - margin): min(x.size, (active[-1] + 1) * hop + margin)]


def load_recording(rec: Recording, fs_list) -> dict[int, np.ndarray]:
    """Mono, trimmed, resampled float32 audio {fs: (L,)}; raises on undecodable files."""
    x, fs = sf.read(str(rec.path), dtype="float32", always_2d=True)
    if not np.all(np.isfinite(x)):
        raise ValueError("non-finite samples")
    x = trim_silence(x.mean(axis=1), fs)
    if x.size < MIN_UTTERANCE_SECONDS * fs:
        return {}
    return {f: resample(x[None], fs, f)[0] for f in fs_list}


def load_pool(recordings: dict[str, list[Recording]], fs_list, progress: bool):
    """Decode every recording once: {speaker: [{fs: audio}, ...]}, and what was skipped."""
    from tqdm import tqdm

    pool: dict[str, list[dict[int, np.ndarray]]] = {}
    skipped = {"undecodable": [], "silent_or_short": 0}
    total = sum(len(v) for v in recordings.values())
    with tqdm(total=total, desc="decoding", unit="file", disable=not progress) as bar:
        for spk in sorted(recordings):
            utts = []
            for rec in recordings[spk]:
                try:
                    audio = load_recording(rec, fs_list)
                except Exception as e:  # a bad file is counted and skipped
                    skipped["undecodable"].append(f"{rec.package}:{rec.relpath}: {e}")
                    audio = None
                if audio == {}:
                    skipped["silent_or_short"] += 1
                elif audio:
                    utts.append(audio)
                bar.update()
            pool[spk] = utts
    return pool, skipped


def speaker_seconds(pool, fs: int) -> dict[str, float]:
    return {s: sum(u[fs].size for u in utts) / fs for s, utts in pool.items()}


@dataclass(frozen=True)
class VoiceOptions:
    root: str  # {out}/{K}speakers
    seed: int
    n_sources: int
    fs: tuple[int, ...]
    cuts: tuple[str, ...]
    seconds: tuple[float, float]
    pause: tuple[float, float]
    overwrite: bool


def plan_voice_mix(opts: VoiceOptions, split: str, index: int, speakers: list[str], pool):
    """All random choices of one mixture: speakers, utterance order, pauses, levels."""
    rng = item_rng(opts.seed, "voices", opts.n_sources, split, index)
    chosen = [speakers[i] for i in rng.choice(len(speakers), opts.n_sources, replace=False)]
    levels = [0.0] + [round(-float(rng.uniform(0, MAX_REL_DB)), 4)
                      for _ in range(opts.n_sources - 1)]  # fmt: skip
    sources = []
    for spk in chosen:
        target = float(rng.uniform(*opts.seconds))
        order = rng.permutation(len(pool[spk]))
        utts, pauses, total, i = [], [], 0.0, 0
        ref = opts.fs[0]
        while total < target:
            u = int(order[i % len(order)])
            pause = float(rng.uniform(*opts.pause)) if utts else 0.0
            utts.append(u)
            pauses.append(round(pause, 4))
            total += pause + pool[spk][u][ref].size / ref
            i += 1
        sources.append({"speaker": spk, "seconds": round(target, 4), "utterances": utts,
                        "pauses_s": pauses})  # fmt: skip
    name = "_".join(
        f"{s['speaker']}-{split}{index:05d}s{k + 1}_{lvl:.4f}"
        for k, (s, lvl) in enumerate(zip(sources, levels))
    )
    return {"name": name, "levels_db": levels, "sources": sources}


def render_source(source: dict, pool, fs: int) -> np.ndarray:
    """Join the planned utterances with their pauses, cut to length, unit RMS."""
    utts = pool[source["speaker"]]
    parts = []
    for u, pause in zip(source["utterances"], source["pauses_s"]):
        parts.append(np.zeros(int(round(pause * fs)), np.float32))
        parts.append(utts[u][fs])
    x = np.concatenate(parts).astype(np.float64)[: int(round(source["seconds"] * fs))]
    n_fade = min(x.size, int(FADE_S * fs))
    x[x.size - n_fade:] *= np.linspace(1.0, 0.0, n_fade)  # no click at the cut
    return x / np.sqrt(np.mean(x**2))


# The decoded voices, set before the item loop: forked workers inherit it instead of
# receiving a pickled copy with every item.
_POOL: dict = {}


def make_voice_item(opts: VoiceOptions, splits, key: tuple[str, int]) -> dict:
    split, index = key
    pool = _POOL
    plan = plan_voice_mix(opts, split, index, splits[split], pool)
    paths = {(fs, cut): item_paths(opts.root, fs, cut, split, opts.n_sources, plan["name"])
             for fs in opts.fs for cut in opts.cuts}  # fmt: skip
    if opts.overwrite or not all(p.exists() for d in paths.values() for p in d.values()):
        audio = [{fs: render_source(s, pool, fs) for fs in opts.fs} for s in plan["sources"]]
        write_mixture(paths, audio, plan["levels_db"], opts.fs, opts.cuts)
    return plan


def licences(packages) -> dict[str, list[str]]:
    """The distinct `License:` fields of each package's Debian copyright file."""
    out = {}
    for name, pkg in packages.items():
        path = pkg.tree / "usr" / "share" / "doc" / name / "copyright"
        text = path.read_text(errors="replace") if path.is_file() else ""
        found = []
        for line in text.splitlines():
            if line.startswith("License:") and line[8:].strip() not in found:
                found.append(line[8:].strip())
        if not found:  # a copyright file in free form
            gpl = "GNU General Public License" in text
            found = [("GPL, " if gpl else "") + f"see /usr/share/doc/{name}/copyright"]
        out[name] = found
    return out


def generate_voices(
    out: str | Path = "data/voices",
    n_sources=(2,),
    fs=(8000,),
    cuts=("min",),
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    seconds: tuple[float, float] = (3.0, 6.0),
    pause: tuple[float, float] = (0.02, 0.2),
    cache: str | Path | None = None,
    packages=PACKAGES,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Fetch the packages, decode the voices once, write `{out}/{K}speakers` for each K.

    Returns the manifest paths. Each manifest is written last and atomically; an
    interrupted run resumes with the same options (existing complete items are kept)
    and refuses other options or other package contents unless `overwrite`.
    """
    sizes = dict(sizes or {"tr": 1000, "cv": 100, "tt": 100})
    fs, cuts = tuple(sorted(set(fs))), tuple(sorted(set(cuts)))
    if not set(cuts) <= {"min", "max"} or not set(sizes) <= set(SPLITS):
        raise ValueError(f"cuts must be min/max and splits tr/cv/tt, got {cuts}, {sizes}")
    if not (0 < seconds[0] <= seconds[1]) or not (0 <= pause[0] <= pause[1]):
        raise ValueError(f"need 0 < seconds min <= max and 0 <= pause min <= max, "
                         f"got {seconds}, {pause}")  # fmt: skip
    out = Path(out)
    pkgs = prepare_packages(Path(cache) if cache else out / "cache", packages)
    recordings, counts = inventory({n: p.tree for n, p in pkgs.items()})
    pool, skipped = load_pool(recordings, fs, progress)
    secs = speaker_seconds(pool, fs[0])
    dropped = {s: round(v, 2) for s, v in secs.items() if v < MIN_SPEAKER_SECONDS}
    pool = {s: u for s, u in pool.items() if s not in dropped}
    splits = assign_splits({s: secs[s] for s in pool})
    paths = []
    for k in sorted(set(n_sources)):
        short = [s for s in SPLITS if sizes.get(s, 0) and len(splits[s]) < k]
        if short:
            raise ValueError(f"split(s) {short} have fewer than {k} speakers: {splits}")
        root = out / f"{k}speakers"
        params = {"seed": seed, mf.N_SOURCES_PARAM: k, "sizes": sizes, "seconds": list(seconds),
                  "pause_s": list(pause), "fs": list(fs), "cuts": list(cuts),
                  "packages": {n: p.as_dict() for n, p in pkgs.items()}}  # fmt: skip
        mf.prepare_root(root, params, overwrite, generator=GENERATOR)
        opts = VoiceOptions(str(root), seed, k, fs, cuts, tuple(seconds), tuple(pause),
                            overwrite)  # fmt: skip
        keys = [(split, i) for split in SPLITS for i in range(sizes.get(split, 0))]
        _POOL.clear()
        _POOL.update(pool)
        try:
            plans = run_items(partial(make_voice_item, opts, splits), keys, workers,
                              f"{k}speakers", progress)  # fmt: skip
        finally:
            _POOL.clear()
        items = {s: [p for (sp, _), p in zip(keys, plans) if sp == s] for s in SPLITS}
        paths.append(mf.write_manifest(root, {
            "generator": GENERATOR,
            "corpus": f"recorded-voice WSJ0-{k}mix",
            "params": params,
            "outputs": sorted(f"wav{f // 1000}k/{c}" for f in fs for c in cuts),
            "levels": LEVEL_CONVENTION,
            "sources": (
                "Each source joins one speaker's silence-trimmed recordings in a random "
                "order with pauses drawn from pause_s, cut to a length drawn from seconds "
                "(10-ms fade at the cut); the first rate's durations decide the plan."),
            "speakers": {s: {spk: round(secs[spk], 2) for spk in splits[s]} for s in SPLITS},
            "dropped_speakers": dropped,
            "skipped_files": {**counts, "silent_or_short": skipped["silent_or_short"],
                              "undecodable": len(skipped["undecodable"]),
                              "undecodable_files": skipped["undecodable"]},
            "licences": licences(pkgs),
            "items": items,
        }))  # fmt: skip
    return paths

"""Music stems in the MUSDB18-HQ folder layout.

`{out}/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav`, 44.1 kHz
stereo float32; mixture = ((drums + bass) + other) + vocals as a float32 sum.
Track names are "Synth NNN - <Title>" (train NNN = 001.., test NNN = 501..),
and depend only on split and index, so they do not change with the seed. The
first `n_valid` train tracks form the validation set (manifest "valid_tracks").
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from datasets.synth import manifest as mf
from datasets.synth.composition import compose
from datasets.synth.music import MUSIC_FS, render_track
from datasets.synth.runner import item_rng, run_items
from datasets.synth.wavio import write_wav

SPLITS = ("train", "test")
STEMS = ("drums", "bass", "other", "vocals")
PEAK = 0.9
_FIRST_NUMBER = {"train": 1, "test": 501}
_TITLE_A = ("Amber", "Silent", "Neon", "Paper", "Velvet", "Hollow", "Golden", "Static",
            "Northern", "Crimson", "Electric", "Quiet", "Broken", "Wild", "Glass", "Lunar")
_TITLE_B = ("Harbour", "Machines", "Summer", "Lights", "Rivers", "Echoes", "Streets",
            "Signals", "Gardens", "Horizon", "Circles", "Letters", "Tides", "Engines")


def track_name(split: str, index: int) -> str:
    """Stable name of a track (independent of the corpus seed)."""
    rng = item_rng(0, "musdb-title", split, index)
    first, second = rng.integers(len(_TITLE_A)), rng.integers(len(_TITLE_B))
    title = f"{_TITLE_A[int(first)]} {_TITLE_B[int(second)]}"
    return f"Synth {_FIRST_NUMBER[split] + index:03d} - {title}"


def valid_track_names(n_valid: int) -> list[str]:
    return [track_name("train", i) for i in range(n_valid)]


@dataclass(frozen=True)
class MusicOptions:
    root: str
    seed: int
    duration: float
    overwrite: bool


def make_item(opts: MusicOptions, key: tuple[str, int]) -> dict:
    """Compose, render and write one track; returns its metadata."""
    split, index = key
    rng = item_rng(opts.seed, "musdb", split, index)
    comp = compose(rng, opts.duration)
    name = track_name(split, index)
    meta = {"name": name, **{k: v for k, v in comp.items() if k != "stems"},
            "stems": {s: {k: v for k, v in comp["stems"][s].items() if k != "notes"}
                      for s in STEMS}}  # fmt: skip
    folder = Path(opts.root) / split / name
    files = [folder / f"{s}.wav" for s in (*STEMS, "mixture")]
    if not opts.overwrite and all(p.exists() for p in files):
        return meta
    stems = render_track(comp, opts.duration, rng)
    peak = max(max(np.abs(x).max() for x in stems.values()), np.abs(sum(stems.values())).max())
    gain = min(1.0, PEAK / peak)
    mix = None
    for s in STEMS:
        x = (stems[s] * gain).astype(np.float32)
        write_wav(folder / f"{s}.wav", x, MUSIC_FS)
        mix = x.copy() if mix is None else mix + x
    write_wav(folder / "mixture.wav", mix, MUSIC_FS)  # last: marks the track complete
    return meta


def generate_musdb(
    out: str | Path = "data/synth/musdb18hq",
    sizes: dict[str, int] | None = None,
    n_valid: int = 2,
    duration: float = 10.0,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate (or complete) the music corpus; returns the manifest path."""
    sizes = dict(sizes or {"train": 8, "test": 4})
    if n_valid > sizes.get("train", 0):
        raise ValueError("n_valid must not exceed the number of train tracks")
    root = Path(out)
    params = {"seed": seed, "sizes": sizes, "n_valid": n_valid, "duration": duration}
    mf.prepare_root(root, params, overwrite)
    opts = MusicOptions(str(root), seed, duration, overwrite)
    keys = [(split, i) for split in SPLITS for i in range(sizes.get(split, 0))]
    metas = run_items(partial(make_item, opts), keys, workers, "musdb18hq", progress)
    return mf.write_manifest(root, {
        "generator": mf.GENERATOR,
        "corpus": "synthetic MUSDB18-HQ",
        "params": params,
        "conventions": __doc__.split("\n\n", 1)[1].strip(),
        "sample_rate": MUSIC_FS,
        "valid_tracks": valid_track_names(n_valid),
        "licences": {"music": mf.LICENCES["music"], "corpus": mf.LICENCES["corpus"]},
        "items": {s: [m for (sp, _), m in zip(keys, metas) if sp == s] for s in SPLITS},
    })  # fmt: skip

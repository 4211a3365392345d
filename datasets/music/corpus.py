"""The rendered multitrack music corpus, in the MUSDB18-HQ layout.

`{out}/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav`, 44.1 kHz stereo
float32, mixture = ((drums + bass) + other) + vocals, with a manifest.json (the
first `n_valid` train tracks are the validation tracks). Each track is either an
excerpt of a real composition from the music21 corpus (`pieces.py`) or a generated
pop-style arrangement (`datasets.synth.composition`, with one to three instruments
in the other stem), rendered with one soundfont: train and validation tracks with
one of TRAIN_SOUNDFONTS, test tracks with TEST_SOUNDFONT only. The pieces are
split between train and test, so no composition is heard in both. A share
`sung_share` of the tracks (0 by default) sing their vocals with a recorded voice
instead of a soundfont's voice patch (`singing.py`): train tracks with the
recorded-voice corpus's tr speakers, test tracks with its held-out tt speakers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from datasets.music.pieces import arrange_piece, corpus_pieces, read_piece
from datasets.music.singing import sing, singers, syllables_of
from datasets.music.soundfonts import TEST_SOUNDFONT, TRAIN_SOUNDFONTS, prepare_soundfonts
from datasets.synth import manifest as mf
from datasets.synth.composition import compose
from datasets.synth.musdb_corpus import PEAK, STEMS
from datasets.synth.music import MUSIC_FS, pan_gains, parts_of, render_track
from datasets.synth.runner import item_rng, run_items
from datasets.synth.wavio import write_wav

GENERATOR = "datasets.music"
LICENCES = {
    "rendering": "TinySoundFont (MIT, tinysoundfont package)",
    "soundfonts": "TimGM6mb.sf2 by Tim Brechbill (GPL-2.0, shipped inside pretty_midi); "
                  "FluidR3_GM.sf2 by Frank Wen (MIT, Debian fluid-soundfont-gm); MuseScore "
                  "General (MIT, Debian musescore-general-soundfont-lossless); see each "
                  "package's copyright file",
    "compositions": "public-domain works encoded in the music21 corpus (shipped with "
                    "music21, BSD-3-Clause) and this project's generator (MIT)",
    "sung vocals": "recordings of klettres-data and ktuberling-data (GPL-2+), only in "
                   "corpora made with sung_share > 0; see each package's copyright file",
    "corpus": mf.LICENCES["corpus"],
}
SPLITS = ("train", "test")
TEST_PIECE_SHARE = 0.15  # of the corpus pieces, reserved for the test split
MIN_SECONDS = 4.0  # a shorter excerpt (the piece ends) is drawn again
# Float32 round-off of the room convolution leaves a resting stem at about -170 dBFS;
# samples below this level are set to exact zero, so a resting stem is digitally silent
# (as in MUSDB18) and BSS Eval leaves its silent windows out.
SILENCE = 10 ** (-140 / 20)


def track_name(split: str, index: int, kind: str) -> str:
    return f"{'Train' if split == 'train' else 'Test'} {index + 1:04d} - {kind}"


def default_cache(out: Path, kind: str = "soundfonts") -> Path:
    """`cache/<kind>` beside the corpus folder (the corpus folder holds tracks only)."""
    return Path(out).resolve().parent / "cache" / kind


def split_pieces(pieces: list[str], seed: int) -> dict[str, list[str]]:
    """Disjoint train and test pieces: a seeded shuffle of the sorted list, cut once."""
    order = np.random.default_rng([seed, 77]).permutation(len(pieces))
    n_test = int(round(TEST_PIECE_SHARE * len(pieces)))
    return {"test": sorted(pieces[i] for i in order[:n_test]),
            "train": sorted(pieces[i] for i in order[n_test:])}  # fmt: skip


@dataclass(frozen=True)
class MusicCorpusOptions:
    root: str
    seed: int
    duration: float
    piece_share: float
    soundfonts: dict  # name -> path
    pieces: dict  # split -> list of paths
    sung_share: float = 0.0
    singers: dict | None = None  # split -> recorded-voice speakers
    voice_trees: tuple = ()  # sorted (package, unpacked tree) pairs


def plan_track(opts: MusicCorpusOptions, split: str, index: int):
    """(composition, seconds, soundfont name, source) of one track, from its own seed."""
    rng = item_rng(opts.seed, "music", split, index)
    names = TRAIN_SOUNDFONTS if split == "train" else (TEST_SOUNDFONT,)
    soundfont = str(names[int(rng.integers(len(names)))])
    pool = opts.pieces[split]
    if pool and rng.random() < opts.piece_share:
        for _ in range(20):  # pieces that do not parse or rest too long are drawn again
            path = pool[int(rng.integers(len(pool)))]
            piece = read_piece(path)
            comp = None if piece is None else arrange_piece(piece, rng, opts.duration)
            if comp is not None and comp["seconds"] >= MIN_SECONDS:
                return comp, comp["seconds"], soundfont, Path(path).relative_to(
                    Path(path).parents[1]).as_posix()
    comp = compose(rng, opts.duration, other_parts=int(rng.integers(1, 4)))
    return comp, opts.duration, soundfont, "generated"


def plan_singer(opts: MusicCorpusOptions, split: str, index: int) -> str | None:
    """The recorded-voice speaker who sings the track's vocals, or None (a voice patch).

    Drawn from its own generator, so sung_share = 0 leaves every track as without it.
    """
    if opts.sung_share <= 0:
        return None
    rng = item_rng(opts.seed, "music-singer", split, index)
    pool = opts.singers[split]
    if rng.random() >= opts.sung_share or not pool:
        return None
    return pool[int(rng.integers(len(pool)))]


def sung_vocals(opts: MusicCorpusOptions, comp: dict, seconds: float, singer: str, rng):
    """Dry stereo (n, 2) vocals: each part of the stem sung by `singer`, panned."""
    syllables = syllables_of(opts.voice_trees, singer, MUSIC_FS)
    return sum(sing(p["notes"], syllables, seconds, MUSIC_FS, rng)[:, None] * pan_gains(p["pan"])
               for p in parts_of(comp["stems"]["vocals"]))  # fmt: skip


def make_track(opts: MusicCorpusOptions, key: tuple[str, int]) -> dict:
    split, index = key
    comp, seconds, soundfont, source = plan_track(opts, split, index)
    singer = plan_singer(opts, split, index)
    kind = "Generated" if source == "generated" else Path(source).stem
    name = track_name(split, index, kind)
    meta = {"name": name, "soundfont": soundfont, "source": source, "seconds": seconds,
            "tempo": comp["tempo"],
            "programs": {s: [p["program"] for p in parts_of(comp["stems"][s])] for s in STEMS},
            "singer": singer}  # fmt: skip
    folder = Path(opts.root) / split / name
    if (folder / "mixture.wav").exists():  # written last: the track is complete
        return meta
    rng = item_rng(opts.seed, "music-render", split, index)
    dry = None
    if singer is not None:
        sing_rng = item_rng(opts.seed, "music-sing", split, index)
        dry = {"vocals": sung_vocals(opts, comp, seconds, singer, sing_rng)}
    stems = render_track(comp, seconds, rng, soundfont=opts.soundfonts[soundfont], dry=dry)
    peak = max(max(np.abs(x).max() for x in stems.values()), np.abs(sum(stems.values())).max())
    gain = min(1.0, PEAK / peak)
    mix = None
    for s in STEMS:
        x = (stems[s] * gain).astype(np.float32)
        x[np.abs(x) < SILENCE] = 0.0
        write_wav(folder / f"{s}.wav", x, MUSIC_FS)
        mix = x.copy() if mix is None else mix + x
    write_wav(folder / "mixture.wav", mix, MUSIC_FS)
    return meta


def generate_music(
    out: str | Path = "data/music",
    sizes: dict[str, int] | None = None,
    n_valid: int = 10,
    duration: float = 20.0,
    piece_share: float = 0.5,
    seed: int = 0,
    cache: str | Path | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    pieces: list[str] | None = None,
    sung_share: float = 0.0,
    voices_cache: str | Path | None = None,
) -> Path:
    """Fetch the soundfonts, render the tracks (resuming a run with the same parameters)
    and write the manifest last; returns its path. `pieces` replaces the music21 corpus.
    With `sung_share` > 0 the recorded-voice packages are fetched into `voices_cache`
    (default `cache/voices` beside OUT) as well."""
    sizes = dict(sizes or {"train": 200, "test": 20})
    if n_valid > sizes.get("train", 0):
        raise ValueError("n_valid must not exceed the number of train tracks")
    for label, share in (("piece_share", piece_share), ("sung_share", sung_share)):
        if not 0 <= share <= 1:
            raise ValueError(f"{label} must lie in [0, 1], got {share}")
    root = Path(out)
    # Fetched before the corpus folder is touched: a missing package leaves nothing behind.
    paths, provenance = prepare_soundfonts(cache or default_cache(root))
    voices, voice_packages, trees = {}, {}, {}
    if sung_share > 0:
        voices, voice_packages, trees = singers(voices_cache or default_cache(root, "voices"))
        empty = [s for s in SPLITS if sizes.get(s, 0) and not voices[s]]
        if empty:
            raise ValueError(f"no recorded-voice speakers to sing the {empty} tracks")
    params = {"seed": seed, "sizes": sizes, "n_valid": n_valid, "duration": duration,
              "piece_share": piece_share, "sung_share": sung_share,
              "soundfonts": {n: p.get("sha256") for n, p in provenance.items()},
              "voice_packages": {n: p["sha256"] for n, p in voice_packages.items()}}  # fmt: skip
    mf.prepare_root(root, params, overwrite, generator=GENERATOR)
    all_pieces = corpus_pieces() if pieces is None else sorted(pieces)
    opts = MusicCorpusOptions(str(root), seed, duration, piece_share, paths,
                              split_pieces(all_pieces, seed), sung_share, voices,
                              tuple(sorted(trees.items())))  # fmt: skip
    keys = [(split, i) for split in SPLITS for i in range(sizes.get(split, 0))]
    metas = run_items(partial(make_track, opts), keys, workers, "music", progress)
    items = {s: [m for (sp, _), m in zip(keys, metas) if sp == s] for s in SPLITS}
    return mf.write_manifest(root, {
        "generator": GENERATOR,
        "corpus": "rendered multitrack music (MUSDB18-HQ layout)",
        "params": params,
        "conventions": __doc__.split("\n\n", 1)[1].strip(),
        "sample_rate": MUSIC_FS,
        "soundfonts": {"files": provenance, "train": list(TRAIN_SOUNDFONTS),
                       "test": [TEST_SOUNDFONT]},
        "n_pieces": {s: len(opts.pieces[s]) for s in SPLITS},
        "singers": {"packages": voice_packages, **voices},
        "valid_tracks": [m["name"] for m in items["train"][:n_valid]],
        "licences": LICENCES,
        "items": items,
    })  # fmt: skip

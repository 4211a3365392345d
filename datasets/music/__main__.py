"""Command line: `python -m datasets.music [options]`.

Fetches fluid-soundfont-gm and musescore-general-soundfont-lossless with
`apt-get download` into `cache/soundfonts` beside OUT (no install, no root; about
450 MB to fetch, 640 MB unpacked), and
writes `{out}/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav` (44.1 kHz
stereo) with a manifest.json. Train and validation tracks use TimGM6mb and
MuseScore General; the test tracks use FluidR3_GM only (unseen instruments).
With --sung-share P, a share P of the tracks have vocals sung by recorded voices
(klettres-data and ktuberling-data, fetched the same way into cache/voices): train
tracks by the recorded-voice corpus's training speakers, test tracks by its
held-out speakers.
"""

import argparse
import sys

from datasets.music.corpus import generate_music
from datasets.voices.packages import PackageError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datasets.music", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/music", help="output folder (default data/music)")
    p.add_argument("--cache", default=None,
                   help="soundfont packages cache (default cache/soundfonts beside OUT)")
    p.add_argument("--n-train", type=int, default=200, help="train tracks, validation included")
    p.add_argument("--n-valid", type=int, default=10, help="the first N train tracks validate")
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per track (at most)")
    p.add_argument("--piece-share", type=float, default=0.5,
                   help="share of tracks from music21 corpus pieces (the rest generated)")
    p.add_argument("--sung-share", type=float, default=0.0,
                   help="share of tracks whose vocals a recorded voice sings (default 0)")
    p.add_argument("--voices-cache", default=None,
                   help="recorded-voice packages cache for --sung-share (default "
                        "cache/voices beside OUT)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (same output for any N)")
    p.add_argument("--overwrite", action="store_true", help="remove a corpus made otherwise")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = generate_music(
            args.out, {"train": args.n_train, "test": args.n_test}, args.n_valid,
            args.duration, args.piece_share, args.seed, args.cache, workers=args.workers,
            overwrite=args.overwrite, progress=not args.no_progress,
            sung_share=args.sung_share, voices_cache=args.voices_cache,
        )  # fmt: skip
    except (PackageError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

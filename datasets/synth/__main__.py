"""Command line: `python -m datasets.synth {speech,enhancement,music,all} [options]`."""

import argparse
import sys
from pathlib import Path

from datasets.synth.musdb_corpus import generate_musdb
from datasets.synth.noise import NOISE_TYPES, TEST_NOISES, TRAIN_NOISES
from datasets.synth.vctk_corpus import generate_vctk_demand
from datasets.synth.wsj0mix_corpus import generate_wsj0mix


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (same output for any N)")
    p.add_argument("--overwrite", action="store_true", help="regenerate existing files")
    p.add_argument("--no-progress", action="store_true")


def _speech_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--words", type=int, nargs=2, default=(5, 12), metavar=("MIN", "MAX"),
                   help="words per sentence (about 0.35 s each)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=None, help="crop utterances")
    p.add_argument("--backend", choices=["library", "cli"], default="library",
                   help="eSpeak NG via espeakng-loader or a system espeak-ng")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets.synth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("speech", help="WSJ0-{2,3}mix layout")
    _common(p, "data/synth/wsj0_mix")
    _speech_opts(p)
    p.add_argument("--n-sources", type=int, nargs="+", default=[2], choices=[2, 3],
                   help="K, the number of sources (speakers) per mixture")  # fmt: skip
    p.add_argument("--n-spkr", dest="n_sources", type=int, nargs="+", choices=[2, 3],
                   help=argparse.SUPPRESS)  # the flag's old name, still accepted
    p.add_argument("--fs", type=int, nargs="+", default=[8000], choices=[8000, 16000])
    p.add_argument("--cut", nargs="+", default=["min"], choices=["min", "max"])
    p.add_argument("--n-tr", type=int, default=100)
    p.add_argument("--n-cv", type=int, default=10)
    p.add_argument("--n-tt", type=int, default=10)

    p = sub.add_parser("enhancement", help="VCTK-DEMAND layout")
    _common(p, "data/synth/VCTK_DEMAND")
    _speech_opts(p)
    p.add_argument("--fs", type=int, default=16000)
    p.add_argument("--n-train", type=int, default=100)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--train-noises", nargs="+", default=list(TRAIN_NOISES), choices=NOISE_TYPES)
    p.add_argument("--test-noises", nargs="+", default=list(TEST_NOISES), choices=NOISE_TYPES)

    p = sub.add_parser("music", help="MUSDB18-HQ layout")
    _common(p, "data/synth/musdb18hq")
    p.add_argument("--n-train", type=int, default=8)
    p.add_argument("--n-test", type=int, default=4)
    p.add_argument("--n-valid", type=int, default=2, help="first train tracks used as valid")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per track")

    p = sub.add_parser("all", help="small default of every corpus")
    _common(p, "data/synth")
    return parser


def run(args: argparse.Namespace) -> list[Path]:
    progress = not args.no_progress
    common = {"seed": args.seed, "workers": args.workers, "overwrite": args.overwrite,
              "progress": progress}  # fmt: skip
    if args.command == "speech":
        sizes = {"tr": args.n_tr, "cv": args.n_cv, "tt": args.n_tt}
        speech = {"words": tuple(args.words), "max_seconds": args.max_seconds,
                  "backend": args.backend}  # fmt: skip
        return [generate_wsj0mix(args.out, k, args.fs, args.cut, sizes, **speech, **common)
                for k in args.n_sources]  # fmt: skip
    if args.command == "enhancement":
        return [generate_vctk_demand(
            args.out, {"train": args.n_train, "test": args.n_test}, fs=args.fs,
            train_noises=args.train_noises, test_noises=args.test_noises,
            words=tuple(args.words), max_seconds=args.max_seconds, backend=args.backend,
            **common)]  # fmt: skip
    if args.command == "music":
        sizes = {"train": args.n_train, "test": args.n_test}
        return [generate_musdb(args.out, sizes, args.n_valid, args.duration, **common)]
    root = Path(args.out)
    return [
        generate_wsj0mix(root / "wsj0_mix", 2, (8000, 16000), ("min", "max"), **common),
        generate_wsj0mix(root / "wsj0_mix", 3, (8000,), ("min", "max"),
                         {"tr": 50, "cv": 10, "tt": 10}, **common),  # fmt: skip
        generate_vctk_demand(root / "VCTK_DEMAND", **common),
        generate_musdb(root / "musdb18hq", **common),
    ]


def main(argv=None) -> int:
    for path in run(build_parser().parse_args(argv)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

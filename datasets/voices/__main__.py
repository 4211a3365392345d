"""Command line: `python -m datasets.voices [options]`.

Fetches klettres-data, ktuberling-data, fillets-ng-data-cs and fillets-ng-data-nl with
`apt-get download` into `{out}/cache` (no install, no root), and writes
`{out}/{K}speakers/wav{8,16}k/{min,max}/{tr,cv,tt}/{mix,s1,..}/` with a manifest.json.
"""

import argparse
import sys

from datasets.voices.corpus import generate_voices
from datasets.voices.packages import PackageError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datasets.voices", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/voices", help="output folder (default data/voices)")
    p.add_argument("--cache", default=None, help="packages cache (default OUT/cache)")
    p.add_argument("--n-sources", type=int, nargs="+", default=[2], choices=[2, 3],
                   help="K, the number of sources (speakers) per mixture")  # fmt: skip
    p.add_argument("--n-spkr", dest="n_sources", type=int, nargs="+", choices=[2, 3],
                   help=argparse.SUPPRESS)  # the flag's old name, still accepted
    p.add_argument("--fs", type=int, nargs="+", default=[8000], choices=[8000, 16000])
    p.add_argument("--cut", nargs="+", default=["min"], choices=["min", "max"])
    p.add_argument("--n-tr", type=int, default=1000)
    p.add_argument("--n-cv", type=int, default=100)
    p.add_argument("--n-tt", type=int, default=100)
    p.add_argument("--seconds", type=float, nargs=2, default=(3.0, 6.0), metavar=("MIN", "MAX"),
                   help="length of each source in seconds, drawn uniformly")
    p.add_argument("--pause", type=float, nargs=2, default=(0.02, 0.2), metavar=("MIN", "MAX"),
                   help="pause between joined recordings in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (same output for any N)")
    p.add_argument("--overwrite", action="store_true", help="regenerate existing files")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths = generate_voices(
            args.out, args.n_sources, args.fs, args.cut,
            {"tr": args.n_tr, "cv": args.n_cv, "tt": args.n_tt}, args.seed,
            tuple(args.seconds), tuple(args.pause), args.cache,
            workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress,
        )  # fmt: skip
    except (PackageError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

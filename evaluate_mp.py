"""Run evaluation on several splits with one worker process per GPU (or CPU workers).

Same options and result files as `evaluate.py`; splits are `val`, `test` (from the
training config) and `libri-clean`, `libri-noisy` (LibriMix test sets). Every
finished utterance is stored at once, so a killed run resumes when restarted.
"""

import argparse
import sys

from evaluation.cli import (
    add_common_args,
    check_baseline_args,
    check_one_shot_args,
    session_kwargs,
    settings_from_args,
)
from evaluation.inputs import EvaluationInputError
from evaluation.parallel import run_workers, worker_devices
from evaluation.results import StoreMismatchError, format_summary
from evaluation.runner import CONFIG_SPLITS, LIBRI_SPLITS
from evaluation.session import EvalSession


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Parallel evaluation on several splits")
    add_common_args(parser)
    parser.add_argument("--split", nargs="+", default=["test"],
                        choices=CONFIG_SPLITS + LIBRI_SPLITS, help="Splits to evaluate")
    parser.add_argument("--libri-root", default="data/LibriMix", help="LibriMix root folder")
    parser.add_argument("--workers", type=int, default=None,
                        help="Worker processes (default: one per GPU, else 2 on CPU)")
    args = parser.parse_args(argv)
    check_baseline_args(parser, args)
    check_one_shot_args(parser, args)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    splits = list(dict.fromkeys(args.split))
    try:
        # Built once here on CPU to fail early; workers rebuild it on their device.
        session = EvalSession(args.ckpt, settings_from_args(args), splits, "cpu",
                              args.output_dir, libri_root=args.libri_root,
                              **session_kwargs(args))
        todo = {s: session.todo(s, args.overwrite) for s in splits}
    except (EvaluationInputError, StoreMismatchError) as e:
        sys.exit(f"error: {e}")
    devices = worker_devices(args.workers)
    print(f"results in {session.result_dir}; {sum(map(len, todo.values()))} utterance(s) "
          f"to do on {devices}", file=sys.stderr)
    if not run_workers(session, todo, devices, args.stop_after):
        sys.exit(1)
    failed = 0
    for split in splits:
        summary = session.finish(split, {"devices": devices, "workers": len(devices)})
        print(format_summary(split, summary))
        failed += summary["n_failed"]
    if failed:
        sys.exit(f"error: {failed} utterance(s) failed; see the summary above")


if __name__ == "__main__":
    main()

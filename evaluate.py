"""Run evaluation on validation or test dataset (one process).

Results go to `{output_dir}/{exp_name}_{ckpt_name}_{infer_params}/`: `{split}.json`
(one record per utterance), `{split}_summary.json`, and with `--save-n N` audio
and reverse-process figures in `{split}_samples/`. An interrupted run resumes
from the finished records in `{split}_items/`.
"""

import argparse
import sys

from tqdm import tqdm

from evaluation.cli import (
    add_common_args,
    check_baseline_args,
    check_one_shot_args,
    default_device,
    session_kwargs,
    settings_from_args,
)
from evaluation.inputs import EvaluationInputError
from evaluation.results import StoreMismatchError, format_summary
from evaluation.session import EvalSession


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Run evaluation on validation or test dataset")
    add_common_args(parser)
    parser.add_argument("-d", "--device", default=default_device(),
                        help="Device to use (default: cuda if available, else cpu)")
    parser.add_argument("--val", action="store_true", help="Run on validation dataset")
    parser.add_argument("--test", action="store_true", help="Run on test dataset")
    parser.add_argument("-w", "--dl-workers", type=int, default=0,
                        help="Number of data-loading worker processes")
    args = parser.parse_args(argv)
    check_baseline_args(parser, args)
    check_one_shot_args(parser, args)
    if not (args.val or args.test):
        parser.error("choose at least one of --val and --test")
    return args


def main(argv=None):
    args = parse_args(argv)
    splits = [s for s in ("val", "test") if getattr(args, s)]
    try:
        session = EvalSession(args.ckpt, settings_from_args(args), splits, args.device,
                              args.output_dir, **session_kwargs(args))
        todo = {s: session.todo(s, args.overwrite) for s in splits}
    except (EvaluationInputError, StoreMismatchError) as e:
        sys.exit(f"error: {e}")
    print(f"results in {session.result_dir}", file=sys.stderr)
    failed = 0
    for split in splits:
        with tqdm(total=len(todo[split]), desc=split, file=sys.stderr) as bar:
            session.run(split, todo[split], stop_after=args.stop_after,
                        dl_workers=args.dl_workers, progress=lambda r: bar.update())
        summary = session.finish(split, {"device": args.device, "workers": 1})
        print(format_summary(split, summary))
        failed += summary["n_failed"]
    if failed:
        sys.exit(f"error: {failed} utterance(s) failed; see the summary above")


if __name__ == "__main__":
    main()

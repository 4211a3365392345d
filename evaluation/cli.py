"""Command-line options shared by `evaluate.py` and `evaluate_mp.py`."""

import argparse

from evaluation.runner import METRIC_SETS, MUSIC_SEGMENT_S, NO_PROC, PERMUTATIONS, Settings
from evaluation.separator import default_device  # noqa: F401  (the scripts' device default)

# each sampler option's command-line flag (evaluate.py, evaluate_mp.py and separate.py; the
# last also has --predictor and --corrector), for the errors of --one-shot
SAMPLER_FLAGS = {"N": "-N", "snr": "--snr", "corrector_steps": "--corrector-steps",
                 "denoise": "--denoise", "final_step": "--final-step", "schedule": "--schedule",
                 "predictor": "--predictor", "corrector": "--corrector"}


def str2bool(value):
    """`--denoise true/false` (also t/f, yes/no, y/n, on/off, 1/0)."""
    v = str(value).strip().lower()
    if v in ("true", "t", "yes", "y", "on", "1"):
        return True
    if v in ("false", "f", "no", "n", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_common_args(parser):
    """Checkpoint, sampler, metric, output and baseline options."""
    parser.add_argument("ckpt", help=f"Path to checkpoint to use, or {NO_PROC} to score "
                        "the unprocessed mixture")
    parser.add_argument("-l", "--limit", type=int, default=None,
                        help="Limit the number of samples to process")
    parser.add_argument("--save-n", type=int, default=0,
                        help="Save audio and a reverse-process figure for the first N samples")
    parser.add_argument("-N", type=int, default=None,
                        help="Number of steps (default: the checkpoint's sampler, as for all "
                        "the sampler options below)")
    parser.add_argument("--snr", type=float, default=None, help="Step size of corrector")
    parser.add_argument("--corrector-steps", type=int, default=None,
                        help="Number of corrector steps")
    parser.add_argument("--denoise", type=str2bool, default=None,
                        help="Use denoising in solver (true/false)")
    parser.add_argument("-s", "--schedule", choices=("linear", "log", "revlog"),
                        default=None, help="Time-step schedule of the sampler")
    parser.add_argument("--final-step", type=str2bool, default=None,
                        help="End with the Tweedie step from t_eps to 0 (true/false; "
                        "default: the model's, true for models trained now)")
    parser.add_argument("--enhance", action="store_true",
                        help="Speech enhancement: score the first source only, no permutation")
    parser.add_argument("--pesq-mode", choices=("nb", "wb"), default=None,
                        help="PESQ mode (default: nb at 8 kHz, wb at 16 kHz and for --enhance)")
    parser.add_argument("--stoi-no-extended", action="store_true",
                        help="Report STOI instead of extended STOI")
    parser.add_argument("--metrics", choices=METRIC_SETS, default="auto",
                        help="speech: SI-SDR, PESQ, ESTOI; music: BSS Eval v4 SDR (1-s windows,"
                        " median per track) and SI-SDR; auto: music for MUSDB-style data")
    parser.add_argument("--permutation", choices=PERMUTATIONS, default="auto",
                        help="match estimates to references (pit) or not (none); auto: none "
                        "for fixed-order models (music stems), pit otherwise")
    parser.add_argument("--segment", type=float, default=None,
                        help="separate in overlapping segments of this many seconds "
                        f"(default: whole utterances; music: {MUSIC_SEGMENT_S:g} s)")
    parser.add_argument("--overlap", type=float, default=0.25,
                        help="overlap fraction of the segments")
    parser.add_argument("--no-blend", action="store_true",
                        help="a shipped model alone, without its one-shot partner "
                        "(docs/separation.md)")
    parser.add_argument("--one-shot", action="store_true",
                        help="a shipped model's one-shot separator alone: no sampler "
                        "(docs/separation.md)")
    parser.add_argument("-o", "--output-dir", default="results", help="Results root folder")
    parser.add_argument("--tag", default=None, help="Suffix of the result folder name")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed; each utterance's sampler is seeded from (seed, index)")
    parser.add_argument("--overwrite", action="store_true",
                        help="Discard finished records instead of resuming from them")
    parser.add_argument("--data-root", default=None,
                        help="Read the checkpoint's datasets from this root folder instead of "
                        "the one it was trained with (same layout)")
    base = parser.add_argument_group(f"{NO_PROC} baseline data (one of)")
    base.add_argument("-c", "--config-from", default=None,
                      help="Take the datasets from the config stored in this checkpoint")
    base.add_argument("--datamodule", default=None,
                      help="Take the datasets from config/datamodule/NAME.yaml")
    base.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                      help="Hydra override of --datamodule, or of a checkpoint's datamodule.* "
                      "config (repeatable)")
    # Tests only: end the process abruptly after N records, as a kill would.
    parser.add_argument("--_stop-after", dest="stop_after", type=int, default=None,
                        help=argparse.SUPPRESS)
    return parser


def settings_from_args(args):
    return Settings(
        N=args.N, snr=args.snr, corrector_steps=args.corrector_steps, denoise=args.denoise,
        schedule=args.schedule, final_step=args.final_step, pesq_mode=args.pesq_mode,
        stoi_extended=not args.stoi_no_extended, enhance=args.enhance, seed=args.seed,
        save_n=args.save_n, limit=args.limit, tag=args.tag, no_proc=args.ckpt == NO_PROC,
        metrics=args.metrics, permutation=args.permutation, segment=args.segment,
        overlap=args.overlap, blend=not args.no_blend, one_shot=args.one_shot)


def session_kwargs(args):
    """The data options of EvalSession from the parsed arguments."""
    return {"config_from": args.config_from, "datamodule": args.datamodule,
            "overrides": args.override, "data_root": args.data_root}


def check_baseline_args(parser, args):
    if args.ckpt != NO_PROC and (args.config_from or args.datamodule):
        parser.error("--config-from/--datamodule only apply to " + NO_PROC)
    if args.config_from and args.datamodule:
        parser.error("give either --config-from or --datamodule, not both")
    if args.ckpt == NO_PROC and args.override and not args.datamodule:
        parser.error(f"--override needs --datamodule with {NO_PROC}")
    bad = [o for o in args.override if not o.startswith("datamodule.") or "=" not in o]
    if args.ckpt != NO_PROC and bad:
        parser.error(f"--override with a checkpoint takes datamodule.KEY=VALUE, got {bad}")
    if args.data_root and args.ckpt == NO_PROC and not args.config_from:
        parser.error("--data-root applies to a checkpoint's config (or --config-from)")


def check_one_shot_args(parser, args):
    """``--one-shot`` runs a shipped model's one-shot separator alone: refuse what would
    then do nothing (sampler flags), what contradicts it (``--no-blend``) and, for the
    evaluation scripts, the mixture baseline."""
    if not args.one_shot:
        return
    if getattr(args, "ckpt", None) == NO_PROC:
        parser.error(f"--one-shot needs a shipped model, not {NO_PROC}")
    if args.no_blend:
        parser.error("--one-shot and --no-blend exclude each other: --one-shot uses the "
                     "one-shot separator alone, --no-blend the diffusion model alone")
    given = [flag for key, flag in SAMPLER_FLAGS.items() if getattr(args, key, None) is not None]
    if given:
        parser.error(f"--one-shot runs no sampler: {', '.join(given)} would do nothing; leave "
                     "them out, or drop --one-shot")

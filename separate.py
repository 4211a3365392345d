"""Separate your own recordings with the shipped model or a trained DiffSep checkpoint.

    python separate.py INPUT OUTPUT_DIR [--model CKPT_OR_NAME] [options]

Without ``--model`` the shipped two-speaker model (``pretrained/speech-2spk-8k.ckpt``,
see docs/model-card-speech-2spk-8k.md) separates the input; ``--model music`` takes the
shipped four-stem music model (``pretrained/music-4stem-11k.ckpt``, see
docs/model-card-music-4stem-11k.md). The shipped speech model's output is a weighted mean
of its diffusion estimate and that of a one-shot separator shipped beside it
(``pretrained/speech-2spk-8k-oneshot.ckpt``); ``--no-blend`` keeps the diffusion
estimate alone, ``--one-shot`` the one-shot separator's alone (three network evaluations
instead of 19: several times faster, a little less accurate). INPUT is an audio file
(wav/flac/ogg) or a folder of them. Each input gives one file per source, named by
``--filename``. The default follows the model: labelled stems (a
music model trained with the fixed stem order) go to ``{track}/{source}.wav``, e.g.
``OUTPUT_DIR/<name>/drums.wav, bass.wav, other.wav, vocals.wav``; unlabelled sources
(speakers, or a model trained with PIT) to ``{source}/{track}.wav``, e.g.
``OUTPUT_DIR/s1/<name>.wav``. Stems have the input's sample rate, length and
channel count (each channel is separated on its own; ``--mono`` downmixes first) and
are 32-bit float WAV unless ``--subtype`` says otherwise. Long recordings (full songs)
are streamed in overlapping segments, in bounded memory; the source order is re-matched
between segments only for unlabelled sources. A file that cannot be read or separated is reported
and skipped; the exit status is then 1. See ``evaluation/separator.py``.
"""

import argparse
import errno
import signal
import sys
from pathlib import Path

from tqdm import tqdm

from evaluation.cli import SAMPLER_FLAGS, check_one_shot_args, str2bool
from evaluation.separator import (
    AUDIO_EXTENSIONS,
    DEFAULT_TEMPLATE,
    MUSIC_SEGMENT_S,
    SEGMENT_S,
    STEM_TEMPLATE,
    Separator,
    collect_inputs,
    default_device,
    remove_stale_partials,
)
from models.pretrained import ALIASES, DEFAULT_MODEL, PRETRAINED, resolve_model
from sdes.sampling import CORRECTORS, PREDICTORS, SCHEDULES


def load_model(path, device, blend=True, one_shot=False):
    """Load a checkpoint, or with ``one_shot`` its one-shot separator; imported late so
    that ``--help`` stays fast."""
    if one_shot:
        from models.pretrained import one_shot_for

        return one_shot_for(path)  # it follows the device of its input
    from models.loading import load_model as load

    return load(path, device, blend=blend)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Separate recordings into sources with a DiffSep checkpoint.",
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="audio file or folder of audio files")
    p.add_argument("output", type=Path, help="output folder")
    p.add_argument(
        "--model", default=None,
        help="checkpoint of a trained model, or the name of a shipped model "
        f"({', '.join(PRETRAINED)}; short names: "
        f"{', '.join(f'{a} = {n}' for a, n in ALIASES.items())}; default {DEFAULT_MODEL})",
    )  # fmt: skip
    p.add_argument(
        "--no-blend", action="store_true",
        help="a shipped model alone: without the one-shot separator whose estimate it is "
        "blended with by default (docs/separation.md)",
    )  # fmt: skip
    p.add_argument(
        "--one-shot", action="store_true",
        help="a shipped model's one-shot separator alone: no sampler, three network "
        "evaluations; several times faster, a little less accurate (docs/separation.md)",
    )  # fmt: skip
    p.add_argument("-r", "--recursive", action="store_true", help="search sub-folders")
    p.add_argument(
        "--filename", default=None,
        help="output name template with {track}, {trackext}, {source} (default: "
        f"{STEM_TEMPLATE} for labelled stems, {DEFAULT_TEMPLATE} otherwise)",
    )  # fmt: skip
    p.add_argument("--subtype", default=None, help="e.g. FLOAT (WAV default), PCM_16, PCM_24")
    g = p.add_argument_group("chunking")
    g.add_argument("--segment", type=float, default=None,
                   help=f"segment length in seconds (default {SEGMENT_S:g}; labelled stems, "
                   f"e.g. music: {MUSIC_SEGMENT_S:g})")
    g.add_argument("--overlap", type=float, default=0.25, help="overlap fraction in [0, 1)")
    g.add_argument("--batch-size", type=int, default=4, help="excerpts per sampler call")
    g.add_argument("--mono", action="store_true", help="downmix to mono before separating")
    g.add_argument(
        "--rematch", action=argparse.BooleanOptionalAction, default=None,
        help="re-match the source order between segments (default: only for unlabelled "
        "sources, never for fixed stems)",
    )  # fmt: skip
    g.add_argument(
        "--no-rescale", dest="rescale", action="store_false",
        help="do not least-squares scale each segment's estimates to the mixture",
    )  # fmt: skip
    s = p.add_argument_group("sampler (default: the model's)")
    s.add_argument("-N", type=int, default=None, help="number of steps")
    s.add_argument("--snr", type=float, default=None, help="step size of the corrector")
    s.add_argument("--corrector-steps", type=int, default=None, help="corrector steps")
    s.add_argument("--denoise", type=str2bool, default=None, help="final denoising step")
    s.add_argument("--final-step", type=str2bool, default=None,
                   help="end with the Tweedie step from t_eps to 0 (true/false)")
    s.add_argument("-s", "--schedule", choices=SCHEDULES, default=None, help="time steps")
    s.add_argument("--predictor", choices=list(PREDICTORS), default=None)
    s.add_argument("--corrector", choices=list(CORRECTORS), default=None)
    p.add_argument("--seed", type=int, default=0, help="sampler seed, per input (default 0)")
    p.add_argument("-d", "--device", default=None, help="default: cuda if present, else cpu")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_one_shot_args(parser, args)
    try:
        model_path = resolve_model(args.model)
    except FileNotFoundError as e:
        parser.error(str(e))
    if args.input.is_dir() and args.output.resolve() == args.input.resolve():
        parser.error(f"the output folder is the input folder ({args.input}): the stems would "
                     "be mixed with the recordings; choose another output folder")
    try:
        inputs = collect_inputs(args.input, args.recursive, exclude=args.output)
    except FileNotFoundError as e:
        parser.error(str(e))
    if not inputs:
        parser.error(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {args.input}")
    device = args.device or default_device()
    # the sampler options given (None: the model's own); --one-shot runs no sampler
    sampler = {} if args.one_shot else {k: getattr(args, k) for k in SAMPLER_FLAGS}
    try:
        separator = Separator(
            load_model(model_path, device, blend=not args.no_blend, one_shot=args.one_shot),
            segment=args.segment, overlap=args.overlap, batch_size=args.batch_size,
            mono=args.mono, rematch=args.rematch, rescale=args.rescale, seed=args.seed,
            device=device, progress=True, **sampler,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    try:
        separator.output_paths(args.output, "track", args.filename, "wav")
    except (KeyError, IndexError, ValueError) as e:
        parser.error(f"bad --filename template {args.filename!r}: {e!r}")
    owner = {}
    for path, track in inputs:  # distinct inputs must never write the same file
        for out in separator.output_paths(args.output, track, args.filename,
                                          path.suffix.lstrip(".")):  # fmt: skip
            if out in owner:
                parser.error(
                    f"{owner[out]} and {path} would both be written to {out}; rename one, or "
                    "keep the extension in the names: --filename '{source}/{track}.{trackext}.wav'")
            owner[out] = path
    for stale in remove_stale_partials(args.output):
        print(f"removed {stale}, left by an interrupted run", file=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)  # clean up like Ctrl-C: no partial files
    failed = 0
    for path, track in tqdm(inputs, desc="files", unit="file", disable=len(inputs) < 2):
        try:
            separator.separate_file(path, args.output, args.filename, track, args.subtype)
        except OSError as e:
            if e.errno == errno.ENOSPC:  # every further file would fail the same way
                print(f"error: {e}", file=sys.stderr)
                return 1
            failed += 1
            tqdm.write(f"error: {path}: {type(e).__name__}: {e}", file=sys.stderr)
        except Exception as e:  # report and go on with the other files
            failed += 1
            tqdm.write(f"error: {path}: {type(e).__name__}: {e}", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"interrupted while separating {path}; its partial files were removed",
                  file=sys.stderr)
            return 130
    if failed:
        print(f"{failed} of {len(inputs)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Probe a checkpoint: one-step (Tweedie) SI-SDRi against t, from the prior, and sampled.

    python bench/probe_denoiser.py CKPT [--root data/synth/wsj0_mix] [--split cv]
        [--n-items 8] [--seconds 2] [--sampler-N 8 30] [--segments 0.5 1] [--threads 2]
        [--trajectory N]

Reads the first ``--n-items`` mixtures of a WSJ0-mix-layout split (the first
``--seconds`` of each) and prints the table of :func:`evaluation.probe.probe`:
how well the model denoises the training distribution at each t, what it makes of
a prior draw at t = T, and what the PC sampler reaches; with ``--trajectory N``
also the one-step estimates along one N-step sampler run. See evaluation/probe.py.
"""

import argparse
import json
from pathlib import Path

import torch

from datasets.wsj0_mix import WSJ0Mix
from evaluation.probe import (
    DEFAULT_TIMES,
    format_probe,
    format_trajectory,
    probe,
    trajectory,
)
from models.loading import load_model

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt", type=Path, help="checkpoint written by train.py")
    ap.add_argument("--root", default=str(REPO / "data" / "synth" / "wsj0_mix"),
                    help="WSJ0-mix-layout corpus root (default: the generated corpus)")
    ap.add_argument("--split", default="cv", choices=("tr", "cv", "tt"))
    ap.add_argument("--n-items", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0, help="first seconds of each item")
    ap.add_argument("--times", type=float, nargs="+", default=list(DEFAULT_TIMES))
    ap.add_argument("--sampler-N", type=int, nargs="*", default=[8],
                    help="sampler steps of the full separations (none: skip)")
    ap.add_argument("--segments", type=float, nargs="*", default=[],
                    help="also separate the excerpts cut into segments of these seconds")
    ap.add_argument("--trajectory", type=int, default=None, metavar="N",
                    help="also score the one-step estimates along an N-step sampler run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.ckpt, blend=False)
    fs = int(model.fs)
    data = WSJ0Mix(args.root, n_sources=model.n_sources, fs=fs, split=args.split,
                   max_len_s=args.seconds, max_n_samples=args.n_items, random_crop=False)
    items = [data[i] for i in range(len(data))]
    mix = torch.stack([m for m, _ in items])
    tgt = torch.stack([s for _, s in items])
    result = probe(model, mix, tgt, times=args.times, sampler_steps=args.sampler_N,
                   segments=[round(s * fs) for s in args.segments], seed=args.seed)
    print(f"{args.ckpt}: {len(items)} items of {args.split}, first {args.seconds:g} s")
    print(format_probe(result))
    if args.trajectory:
        result["trajectory"] = trajectory(model, mix, tgt, N=args.trajectory, seed=args.seed)
        print(format_trajectory(result["trajectory"]))
    if args.json is not None:
        result["segments"] = [dict(N=n, samples=length, si_sdri=v)
                              for (n, length), v in result["segments"].items()]
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

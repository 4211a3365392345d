"""The shipped speech model on held-out recorded voices and on generated speech.

    python bench/bench_pretrained.py [--model speech-2spk-8k] [--steps 2 4 8 16 30]
        [--n-items 50] [--voices data/voices] [--synth data/synth/wsj0_mix]
        [--baseline DISC.pt] [--blend-weights W ...] [--views F ...] [--postfilter W]
        [--split tt|cv] [--threads 2] [--out results.json]

For each test split present (the recorded-voice corpus's tt split, whose speakers the
model never heard, and the generated corpus's tt split), the first `--n-items` 8-kHz
two-speaker mixtures (min cut, whole utterances) are scored side by side: the
unprocessed mixture; the one-shot separator (the shipped model's partner, or the file
of `bench/bench_discriminative_baseline.py --save` given as `--baseline`), with the
speed views of the partner (`models.blend.speed_views`; `--views` sets others) and its
Wiener post-filter (`models/postfilter.py`; `--postfilter` sets its weight), then
without the filter, and with one view as well; the diffusion model alone, its sampler
at every step count of `--steps` (the model's own corrector, snr, schedule and final
step) and at the counts of `--flip-final-step` with the final Tweedie step (t_eps to 0)
toggled; and the blend of the two separators (`models/blend.py`, what the shipped model
returns) at the first count of `--steps`, with the partner's weight or each of
`--blend-weights` (the sampler runs once for all). `--split cv` scores the validation
splits instead (speakers held out of training too), whole utterances as well: what
choices between models and settings are made on, so that the tt figure stays untouched
by them. Columns: mean and median SI-SDRi, the share of mixtures improved by more than
3 dB, narrow-band PESQ, ESTOI, network evaluations and the real-time factor (separation
time over audio duration, on `--threads` CPU threads).
"""

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from datasets.audio import DatasetError
from datasets.wsj0_mix import WSJ0Mix
from evaluation.runner import Settings, evaluate_item
from metrics.separation import score_item
from models.blend import OneShot, Partner, combine
from models.loading import load_model, model_from_checkpoint, read_checkpoint
from models.postfilter import WienerFilter
from models.pretrained import resolve_model

REPO = Path(__file__).resolve().parents[1]


class Blends:
    """The blend of the model's sampler estimate with the one-shot estimate at
    ``weight`` (set it between runs): the sampler runs once per mixture and its time is
    added to every later weight's records (``extra_s``)."""

    def __init__(self, model, partner):
        self.model, self.partner, self.weight = model, partner, partner.weight
        self.fs, self.n_sources = model.fs, model.n_sources
        self.source_names = model.source_names
        self.cache, self.extra_s = {}, 0.0  # sha1 of the mixture -> (est, nfe, seconds)

    def separate(self, mix, intermediate=False, generator=None, **sampler):
        key = hashlib.sha1(mix.numpy().tobytes()).hexdigest()
        self.extra_s = 0.0
        if key in self.cache:
            est, nfe, self.extra_s = self.cache[key]
        else:
            t0 = time.perf_counter()
            est, nfe, _ = self.model.separate(mix, generator=generator, blend=False, **sampler)
            self.cache[key] = (est, nfe, time.perf_counter() - t0)
        other = self.partner.estimate(mix)
        return combine(est, other, mix, self.weight), nfe + self.partner.nfe, None


def mixture_row(ds, n_items):
    recs = []
    for i in range(n_items):
        mix, tgt = ds[i]
        ref = tgt.double().numpy()
        est = np.repeat(mix.double().numpy(), ref.shape[0], axis=0)
        recs.append({**score_item(est, ref, mix[0].double().numpy(), ds.fs, "nb"), "nfe": 0,
                     "run_time_s": 0.0, "duration_s": mix.shape[-1] / ds.fs})
    return recs


def separator_rows(sep, ds, n_items, settings):
    recs = []
    for i in range(n_items):
        mix, tgt = ds[i]
        rec = evaluate_item(sep, i, mix, tgt, {"name": ds.names[i]}, settings,
                            torch.device("cpu"))
        rec["run_time_s"] += getattr(sep, "extra_s", 0.0)  # Blends: the cached sampler's
        recs.append({**rec, "duration_s": mix.shape[-1] / ds.fs})
    return recs


def summarize(recs):
    sdri = np.array([np.mean(r["si_sdr_improvement"]) for r in recs])
    mean = lambda key: float(np.mean([v for r in recs for v in r[key] if v is not None]))  # noqa: E731
    return {"n": len(recs), "si_sdri_mean": float(sdri.mean()),
            "si_sdri_median": float(np.median(sdri)),
            "share_above_3db": float(np.mean(sdri > 3.0)),
            "pesq_nb": mean("pesq"), "estoi": mean("estoi"), "nfe": int(recs[0]["nfe"]),
            "rtf": sum(r["run_time_s"] for r in recs) / sum(r["duration_s"] for r in recs)}


def print_table(title, rows):
    print(f"\n== {title} ==")
    print(f"{'':46s}{'SI-SDRi':>9s}{'median':>8s}{'>3 dB':>7s}{'PESQ':>6s}{'ESTOI':>7s}"
          f"{'NFE':>5s}{'RTF':>7s}")
    for name, s in rows:
        print(f"{name:46s}{s['si_sdri_mean']:9.2f}{s['si_sdri_median']:8.2f}"
              f"{100 * s['share_above_3db']:6.0f}%{s['pesq_nb']:6.2f}{s['estoi']:7.2f}"
              f"{s['nfe']:5d}{s['rtf']:7.3f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint or shipped model name")
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16, 30])
    ap.add_argument("--flip-final-step", type=int, nargs="*", default=[4, 8], metavar="N",
                    help="also run these step counts with the final Tweedie step toggled")
    ap.add_argument("--n-items", type=int, default=50)
    ap.add_argument("--voices", type=Path, default=Path("data/voices"))
    ap.add_argument("--synth", type=Path, default=Path("data/synth/wsj0_mix"))
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a one-shot separator written by bench_discriminative_baseline.py "
                    "--save (default: the shipped model's partner, when it has one)")
    ap.add_argument("--blend-weights", type=float, nargs="+", default=None, metavar="W",
                    help="shares of the diffusion estimate in the blend rows (default: "
                    "the partner's own, 0.5 for --baseline)")
    ap.add_argument("--views", type=float, nargs="+", default=None, metavar="F",
                    help="speed factors of the one-shot separator's views (default: the "
                    "partner's own, 1 for --baseline)")
    ap.add_argument("--postfilter", type=float, default=None, metavar="W",
                    help="weight of the one-shot separator's Wiener post-filter, 0 for none "
                    "(default: the partner's own, none for --baseline)")
    ap.add_argument("--split", choices=("tt", "cv"), default="tt",
                    help="test split (default) or the validation split to choose on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write every number here (JSON)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    model = load_model(path, "cpu")
    partner = model.partner
    if args.baseline is not None:
        weight = 0.5 if partner is None else partner.weight
        partner = Partner(model_from_checkpoint(read_checkpoint(args.baseline), args.baseline),
                          weight, args.baseline)
    if partner is not None and args.views is not None:
        try:
            partner = partner.with_views(args.views)
        except ValueError as e:
            ap.error(f"--views: {e}")
    if partner is not None and args.postfilter is not None:
        try:  # the window and power of the shipped partner's filter (or the defaults)
            shipped = model.partner and model.partner.postfilter or WienerFilter()
            partner = partner.with_postfilter(None if args.postfilter == 0 else
                                              dataclasses.replace(shipped, weight=args.postfilter))
        except ValueError as e:
            ap.error(f"--postfilter: {e}")
    model.partner = None  # the DiffSep rows: the sampler's estimate alone
    base = {k: model.sampler[k] for k in ("snr", "corrector_steps", "denoise", "schedule")}
    results = {"model": str(path), "threads": args.threads, "sampler": base,
               "split": args.split, "one_shot": None if partner is None else str(partner.path),
               "views": None if partner is None else list(partner.views),
               "postfilter": None if partner is None or partner.postfilter is None
               else dataclasses.asdict(partner.postfilter), "corpora": {}}
    corpora = ((f"recorded voices, held-out speakers ({args.split})", args.voices),
               (f"generated speech ({args.split})", args.synth))  # fmt: skip
    for title, root in corpora:
        try:
            ds = WSJ0Mix(root, 2, 8000, "min", args.split)
        except DatasetError as e:
            print(f"\n== {title}: skipped ({e}) ==")
            continue
        n = min(args.n_items, len(ds))
        rows = [("unprocessed mixture", summarize(mixture_row(ds, n)))]
        if partner is not None:
            name = "one-shot separator, speeds " + "/".join(f"{f:g}" for f in partner.views)
            plain = partner.with_postfilter(None)
            variants = [(name, plain)]
            if partner.postfilter is not None:
                variants.insert(0, (f"{name}, Wiener {partner.postfilter.weight:g}", partner))
            if partner.views != (1.0,):
                variants.append(("one-shot separator, speed 1", plain.with_views([1.0])))
            for name, variant in variants:
                recs = separator_rows(OneShot(variant), ds, n, Settings())
                rows.append((name, summarize(recs)))
        default_final = bool(model.sampler["final_step"])
        runs = [(n_steps, default_final) for n_steps in args.steps]
        runs += [(n_steps, not default_final) for n_steps in args.flip_final_step]
        for steps, final in runs:
            t0 = time.time()
            model.sampler["final_step"] = final
            recs = separator_rows(model, ds, n, Settings(N=steps, **base))
            name = f"DiffSep N = {steps}" + (", final step" if final else "")
            rows.append((name, summarize(recs)))
            print(f"  {name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        model.sampler["final_step"] = default_final
        if partner is not None:
            steps, blends = args.steps[0], Blends(model, partner)
            for weight in args.blend_weights or [partner.weight]:
                blends.weight = weight
                recs = separator_rows(blends, ds, n, Settings(N=steps, **base))
                rows.append((f"blend, N = {steps}, weight {weight:g}", summarize(recs)))
        print_table(f"{title}: {n} mixtures, {root}", rows)
        results["corpora"][title] = {"root": str(root), "rows": dict(rows)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

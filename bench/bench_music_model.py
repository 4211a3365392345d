"""The shipped music model (or any four-stem checkpoint) on a held-out MUSDB-layout test set.

    python bench/bench_music_model.py [--model music] [--root data/music] [--steps 4 8]
                                      [--limit N] [--threads 2]

Scores, with the user-facing ``evaluate.py`` (stereo stems at 44.1 kHz, the model's
default 10-s segments), the model at each sampler step count, the unprocessed mixture
as every stem, and ``mixture / 4`` (the prior mean, where the sampler starts): per-stem
BSS Eval v4 SDR (median over 1-s windows, then over tracks, the MUSDB convention) and
SI-SDR (median over tracks), their means over the four stems, and the real-time factor
(separation seconds per second of stereo audio) on this machine's cores.

``--root data/music`` is the rendered corpus's test split (FluidR3_GM, a soundfont
held out of training); ``--root data/musdb18hq`` gives the same table on MUSDB18-HQ.
Writes ``bench_music_model.json`` in the output folder.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_music import STEMS, per_source

from demo import summary_of
from models.pretrained import resolve_model

REPO = Path(__file__).resolve().parents[1]

TARGET_DB = 3.0  # issue 22: SDR >= mixture/4 + 3 dB and SI-SDR >= mixture + 3 dB (stem mean)


def run(cmd, threads):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    print("\n$ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, check=True)


def prior_mean_sdr(root: Path, limit: int | None) -> dict:
    """Per-stem SDR (MUSDB convention) of ``mixture / 4`` on the stereo test tracks.

    Its SI-SDR is the mixture's (a scale does not change SI-SDR), so only SDR is computed.
    """
    from datasets.musdb import MUSDB18HQ
    from evaluation.music import WIN_S, _sources_last, framewise_sdr, track_median

    ds = MUSDB18HQ(root=str(root), split="test", fs=44100, channels="stereo")
    rows = []
    for i in range(len(ds) if limit is None else min(limit, len(ds))):
        mix, tgt = (x.double().numpy() for x in ds[i])  # (C, L), (K, C, L)
        est = np.broadcast_to(mix / len(STEMS), tgt.shape)
        win = int(WIN_S * ds.fs)
        rows.append(track_median(framewise_sdr(_sources_last(tgt), _sources_last(est), win,
                                               win)))  # fmt: skip
    return dict(zip(ds.source_names, np.median(rows, axis=0).tolist()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="music", help="checkpoint or shipped model name")
    ap.add_argument("--root", type=Path, default=Path("data/music"), help="MUSDB-layout root")
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8], help="sampler steps N")
    ap.add_argument("--final-step", choices=["true", "false"], default=None,
                    help="the sampler's final Tweedie step (default: the model's)")
    ap.add_argument("--limit", type=int, default=None, help="first N test tracks only")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the evaluations")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default exp/bench_music_model/<date>)")
    args = ap.parse_args()
    py = sys.executable
    ckpt = resolve_model(args.model)
    root = (REPO / args.root).resolve() if not args.root.is_absolute() else args.root
    if not (root / "test").is_dir():
        sys.exit(f"no test split under {root}: build it with `python -m datasets.music "
                 f"--out {args.root}` (or give --root of a MUSDB18-HQ copy)")
    out = (args.out or REPO / "exp" / "bench_music_model" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    out = out.resolve()
    common = ["--test", "--data-root", root, "--overwrite", "-d", "cpu"]
    if args.limit:
        common += ["-l", args.limit]
    sampler = [] if args.final_step is None else ["--final-step", args.final_step]
    run([py, "evaluate.py", "__no_proc__", "-c", ckpt, *common, "-o", out / "mixture"],
        args.threads)
    _, mix = summary_of(out / "mixture")
    rows, rtf = {}, {}
    for n in args.steps:
        run([py, "evaluate.py", ckpt, "-N", n, *sampler, *common, "-o", out / f"model-N{n}"],
            args.threads)
        _, res = summary_of(out / f"model-N{n}")
        rows[n] = {"sdr": per_source(res, "sdr"), "si_sdr": per_source(res, "si_sdr"),
                   "n_tracks": res["n_ok"]}  # fmt: skip
        rtf[n] = (res["metrics"].get("rtf") or {}).get("mean")
    prior_sdr = prior_mean_sdr(root, args.limit)
    base = {"mix_sdr": per_source(mix, "sdr"), "mix_si_sdr": per_source(mix, "si_sdr"),
            "mix4_sdr": prior_sdr}

    def mean(d):
        return float(np.mean([d[s] for s in STEMS]))

    report = {"model": str(ckpt), "root": str(root), "threads": args.threads,
              "final_step": args.final_step,
              "limit": args.limit, "baselines": base, "model_by_N": rows, "rtf": rtf,
              "means": {"mix_sdr": mean(base["mix_sdr"]), "mix4_sdr": mean(prior_sdr),
                        "mix_si_sdr": mean(base["mix_si_sdr"]),
                        **{f"N{n}": {"sdr": mean(r["sdr"]), "si_sdr": mean(r["si_sdr"])}
                           for n, r in rows.items()}}}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_music_model.json").write_text(json.dumps(report, indent=2))

    print(f"\n{ckpt.name} on {root} (test split, {mix['n_ok']} tracks, stereo 44.1 kHz)")
    print("SDR: BSS Eval v4, median over 1-s windows then over tracks; SI-SDR: median "
          "over tracks (dB)")
    head = f"{'stem':8s}{'mix SDR':>9s}{'mix/4 SDR':>10s}{'mix SI':>9s}"
    for n in rows:
        head += f"{f'SDR N={n}':>10s}{f'SI N={n}':>9s}"
    print(head)
    for s in (*STEMS, "mean"):
        pick = (lambda d: mean(d)) if s == "mean" else (lambda d, s=s: d[s])
        line = (f"{s:8s}{pick(base['mix_sdr']):9.2f}{pick(prior_sdr):10.2f}"
                f"{pick(base['mix_si_sdr']):9.2f}")
        for r in rows.values():
            line += f"{pick(r['sdr']):10.2f}{pick(r['si_sdr']):9.2f}"
        print(line)
    for n, r in rows.items():
        d_sdr, d_si = mean(r["sdr"]) - mean(prior_sdr), mean(r["si_sdr"]) - mean(base["mix_si_sdr"])
        ok = d_sdr >= TARGET_DB and d_si >= TARGET_DB
        print(f"N = {n}: SDR {d_sdr:+.2f} dB over mixture/4, SI-SDR {d_si:+.2f} dB over the "
              f"mixture (target +{TARGET_DB:g} both: {'met' if ok else 'not met'}); "
              f"real-time factor {rtf[n]:.2f} on {args.threads} thread(s)")
    print(f"report: {out / 'bench_music_model.json'}")


if __name__ == "__main__":
    main()

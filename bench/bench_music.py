"""Learning run of the small music configuration (K = 4 stems) on the generated corpus.

    python bench/bench_music.py [--minutes 20] [--threads 1] [--tracks 24] [-N 10] [-- overrides]

1. generates the music corpus in the MUSDB18-HQ layout (``python -m datasets.synth
   music``) unless ``data/synth/musdb18hq`` already holds it;
2. trains ``python train.py experiment=music-demo`` for a fixed wall time;
3. scores the last checkpoint and the unprocessed mixture on the generated test tracks
   with ``evaluate.py`` (stereo stems at 44.1 kHz, BSS Eval v4 SDR on 1-s windows,
   median per track, then median over tracks);
4. prints the per-stem table, model against the mixture and against ``mixture / 4``
   (the prior mean, where the sampler starts), and the training speed.

Everything is the user-facing command line, printed before it runs. Writes
``bench_music.json`` in the run folder.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from demo import hms, run, summary_of

REPO = Path(__file__).resolve().parents[1]

CORPUS = Path("data/synth/musdb18hq")
STEMS = ("drums", "bass", "other", "vocals")


def corpus_size(root):
    return {split: len([p for p in (REPO / root / split).glob("*") if p.is_dir()])
            for split in ("train", "test")} if (REPO / root / "manifest.json").is_file() else {}


def per_source(summary, metric, stat="median"):
    entry = (summary["metrics"].get(metric) or {}).get("per_source") or {}
    return {name: (entry.get(name) or {}).get(stat) for name in STEMS}


def prior_mean_sdr(root, n_sources=len(STEMS)):
    """Per-stem SDR (BSS Eval v4 convention) of ``mixture / K`` on the stereo test tracks.

    ``mixture / K`` is where the sampler starts (the prior mean): a separator that
    learnt nothing returns about that. SDR is not scale-invariant, so this baseline
    scores several dB above the unprocessed mixture (about +6 dB for four
    uncorrelated stems of equal power); a real gain must beat it too.
    """
    from datasets.musdb import MUSDB18HQ
    from evaluation.music import WIN_S, _sources_last, framewise_sdr, track_median

    ds = MUSDB18HQ(root=str(REPO / root), split="test", fs=44100, channels="stereo")
    rows = []
    for i in range(len(ds)):
        mix, tgt = (x.double().numpy() for x in ds[i])  # (C, L), (K, C, L)
        est = np.broadcast_to(mix / n_sources, tgt.shape)
        win = int(WIN_S * ds.fs)
        rows.append(track_median(framewise_sdr(_sources_last(tgt), _sources_last(est), win,
                                               win)))
    return dict(zip(ds.source_names, np.median(np.stack(rows), axis=0).tolist()))


def steps_done(run_dir):
    """Optimizer steps of the training run, from its last.ckpt."""
    from models.loading import read_checkpoint

    return int(read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training wall time")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--tracks", type=int, default=24, help="generated train tracks")
    ap.add_argument("--test-tracks", type=int, default=4, help="generated test tracks")
    ap.add_argument("-N", type=int, default=10, help="sampler steps of the evaluation")
    ap.add_argument("--out", type=Path, default=None,
                    help="run folder (default exp/bench_music/<date>)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for train.py")
    args = ap.parse_args()
    py = sys.executable
    out = args.out or REPO / "exp" / "bench_music" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out = out.resolve()

    have = corpus_size(CORPUS)
    if have.get("train", 0) < args.tracks or have.get("test", 0) < args.test_tracks:
        run([py, "-m", "datasets.synth", "music", "--out", CORPUS, "--n-train", args.tracks,
             "--n-test", args.test_tracks, "--n-valid", "2", "--duration", "10",
             "--workers", "2", "--no-progress"])
    else:
        print(f"found {CORPUS} with {have} tracks")

    train_dir = out / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    cmd = [py, "train.py", "experiment=music-demo", f"trainer.max_time={hms(args.minutes)}",
           f"hydra.run.dir={train_dir}", "trainer.enable_progress_bar=false", *args.overrides]
    if args.threads:
        cmd.append(f"num_threads={args.threads}")
    t0 = time.time()
    run(cmd, log=train_dir / "train_stdout.log")
    train_s = time.time() - t0
    ckpt = train_dir / "checkpoints" / "last.ckpt"
    steps = steps_done(train_dir)

    # Last checkpoint: with 2 validation batches the per-epoch SI-SDR is too noisy to
    # pick a best one, and the EMA weights of the last step are the most trained.
    results = out / "results"
    t1 = time.time()
    run([py, "evaluate.py", ckpt, "--test", "-N", args.N, "-o", results / "model",
         "--save-n", "1", "--overwrite", "-d", "cpu"])
    eval_s = time.time() - t1
    run([py, "evaluate.py", "__no_proc__", "-c", ckpt, "--test", "-o", results / "mixture",
         "--overwrite"])
    _, model = summary_of(results / "model")
    _, mix = summary_of(results / "mixture")
    prior = prior_mean_sdr(CORPUS)

    table = {name: {"sdr": per_source(model, "sdr")[name],
                    "mix_sdr": per_source(mix, "sdr")[name], "mix4_sdr": prior[name],
                    "si_sdr": per_source(model, "si_sdr")[name],
                    "mix_si_sdr": per_source(mix, "si_sdr")[name]} for name in STEMS}
    rtf = (model["metrics"].get("rtf") or {}).get("mean")
    report = {"minutes": args.minutes, "threads": args.threads, "N": args.N,
              "train_s": round(train_s, 1), "steps": steps, "steps_per_s": steps / train_s,
              "eval_s": round(eval_s, 1), "n_test_tracks": model["n_ok"], "rtf": rtf,
              "per_stem": table, "checkpoint": str(ckpt)}
    (out / "bench_music.json").write_text(json.dumps(report, indent=2))

    def cell(v):
        return f"{v:8.2f}" if v is not None else f"{'-':>8s}"

    print(f"\n{steps} optimizer steps in {train_s / 60:.1f} min "
          f"({steps / train_s:.3f} steps/s incl. validation); evaluation (N = {args.N}) "
          f"{eval_s:.0f} s for {model['n_ok']} test tracks")
    print("median over tracks of the per-track median over 1-s windows (dB); SI-SDR median")
    print("baselines: the mixture as every stem (mix), and mixture / 4, the prior mean (mix/4)")
    print(f"{'stem':8s}{'mix SDR':>10s}{'mix/4 SDR':>10s}{'SDR':>10s}{'gain':>10s}"
          f"{'mix SI':>10s}{'SI-SDR':>10s}")
    for name, row in table.items():
        gain = None if None in (row["sdr"], row["mix_sdr"]) else row["sdr"] - row["mix_sdr"]
        print(f"{name:8s}  {cell(row['mix_sdr'])}  {cell(row['mix4_sdr'])}  {cell(row['sdr'])}"
              f"  {cell(gain)}  {cell(row['mix_si_sdr'])}  {cell(row['si_sdr'])}")
    print(f"report: {out / 'bench_music.json'}")


if __name__ == "__main__":
    main()

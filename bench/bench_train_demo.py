"""Learning run of the ``demo`` experiment for a fixed wall time on this CPU.

    python bench/bench_train_demo.py [--minutes 30] [--threads 1] [-- extra hydra overrides]
    python bench/bench_train_demo.py --summarize demo_out/train   # curve of a finished run

Trains ``python train.py experiment=demo`` with ``trainer.max_time`` set to the
budget, then reads the TensorBoard events of the run and reports the training
speed (steps/s) and the curve of the validation SI-SDR improvement over the
mixture (``val/si_sdri``, generated held-out split) against wall time. Writes
``bench_summary.json`` in the run dir. Needs the generated corpus
(``python -m datasets.synth speech --out data/synth/wsj0_mix``).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from demo import hms  # Lightning's max_time string, as make demo passes it

REPO = Path(__file__).resolve().parents[1]

DATA = REPO / "data" / "synth" / "wsj0_mix" / "2speakers" / "wav8k" / "min"


def scalars(acc, tag):
    if tag not in acc.Tags()["scalars"]:
        return []
    return [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)]


def summarize(run_dir, t_start=None):
    """Speed and validation curve of a run; minutes count from ``t_start`` (default:
    the run's first logged training step)."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    train = scalars(acc, "train/loss_step") or scalars(acc, "train/loss")
    if t_start is None:
        t_start = train[0][1] if train else 0.0
    sdri = {s: v for s, _, v in scalars(acc, "val/si_sdri")}
    sdr = {s: v for s, _, v in scalars(acc, "val/si_sdr")}
    vloss = {s: v for s, _, v in scalars(acc, "val/loss")}
    walls = {s: w for s, w, _ in scalars(acc, "val/si_sdri")}
    curve = [dict(step=s, minutes=round((walls[s] - t_start) / 60, 2), si_sdri=sdri[s],
                  si_sdr=sdr.get(s), val_loss=vloss.get(s)) for s in sorted(sdri)]
    speed = None
    if len(train) >= 2:
        (s0, w0, _), (s1, w1, _) = train[0], train[-1]
        speed = (s1 - s0) / max(w1 - w0, 1e-9)  # includes validation pauses
    return dict(steps=train[-1][0] if train else 0, steps_per_s=speed, curve=curve,
                final_train_loss=train[-1][2] if train else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="training wall time")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=None, help="run dir (default exp/bench_demo/...)")
    ap.add_argument("--summarize", type=Path, default=None, metavar="RUN_DIR",
                    help="no training: report the curve of an existing run (e.g. demo_out/train)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for train.py")
    args = ap.parse_args()
    if args.summarize is not None:
        report(dict(summarize(args.summarize), run_dir=str(args.summarize)), None,
               args.summarize)
        return
    if not (DATA / "tr" / "mix").is_dir():
        sys.exit(f"no generated corpus in {DATA}: run "
                 "`python -m datasets.synth speech --out data/synth/wsj0_mix` first")
    out = args.out or REPO / "exp" / "bench_demo" / time.strftime("%Y-%m-%d_%H-%M-%S")
    cmd = [sys.executable, str(REPO / "train.py"), "experiment=demo",
           f"trainer.max_time={hms(args.minutes)}", f"hydra.run.dir={out}",
           "trainer.enable_progress_bar=false", *args.overrides]
    if args.threads:
        cmd.append(f"num_threads={args.threads}")
    print("running:", " ".join(cmd), flush=True)
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench_train.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ))
    wall = time.time() - t_start
    if proc.returncode != 0:
        sys.exit(f"train.py failed (rc {proc.returncode}), see {out / 'bench_train.log'}")
    summary = dict(summarize(out, t_start), wall_s=round(wall, 1), minutes=args.minutes,
                   threads=args.threads, run_dir=str(out))
    report(summary, wall, out)


def report(summary, wall, out):
    """Print the speed and the curve; write ``bench_summary.json`` in ``out``."""
    (Path(out) / "bench_summary.json").write_text(json.dumps(summary, indent=2))
    speed = summary["steps_per_s"]
    span = f" in {wall / 60:.1f} min of wall time" if wall is not None else ""
    print(f"\n{summary['steps']} steps{span} "
          f"({'n/a' if speed is None else f'{speed:.3f}'} steps/s incl. validation)")
    print(f"{'step':>6} {'minutes':>8} {'SI-SDRi dB':>11} {'SI-SDR dB':>10} {'val loss':>9}")
    for row in summary["curve"]:
        print(f"{row['step']:>6} {row['minutes']:>8.2f} {row['si_sdri']:>11.2f} "
              f"{row['si_sdr']:>10.2f} {row['val_loss']:>9.4f}")
    print(f"summary: {Path(out) / 'bench_summary.json'}")


if __name__ == "__main__":
    main()

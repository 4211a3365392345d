"""The shipped model on recorded voices, then the whole pipeline on CPU: ``make demo``.

    python -m demo [--minutes 20] [--eval-items 10] [--threads N] [--out demo_out]
                   [--no-train]

0. separate the example mixtures shipped in ``pretrained/examples`` (recorded voices of
   held-out speakers) with the shipped model (``python separate.py``, no ``--model``) and
   score them against their references: under a minute, before any training;
1. generate the offline 2-speaker corpus in the WSJ0-2mix layout
   (``python -m datasets.synth speech``), unless it is already there;
2. train the demo DiffSep model (``python train.py experiment=demo``) for a
   bounded wall time;
3. evaluate its best checkpoint and the unprocessed mixture on the first test
   mixtures (``evaluate.py CKPT --test``, ``evaluate.py __no_proc__ -c CKPT --test``);
4. separate a few test mixtures to WAV files (``separate.py``);
5. print the scores side by side and where everything was written.

Each step is the user-facing command, printed before it runs, so the demo is
also a recipe. Twenty minutes of CPU training make a small model that separates
the generated speakers by a few dB: the numbers show the pipeline end to end, not
what the full DiffSep network reaches after days on a GPU (see docs/demo.md).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
CORPUS = Path("data/synth/wsj0_mix")
SPLIT_DIR = CORPUS / "2speakers" / "wav8k" / "min"
CORPUS_SIZES = {"tr": 1000, "cv": 50, "tt": 50}
EXAMPLES = REPO / "pretrained" / "examples"
SHIPPED_ROW = "shipped model (DiffSep + one-shot)"  # the blend of models/blend.py
METRICS = (("si_sdr", "SI-SDR dB"), ("si_sdr_improvement", "SI-SDRi dB"), ("pesq", "PESQ nb"),
           ("estoi", "ESTOI"))


def run(cmd, log=None):
    """Run a repo script like a user would; stop the demo with its output if it fails."""
    print("\n$ " + " ".join(str(c) for c in cmd), flush=True)
    env = dict(os.environ)
    if log is None:
        proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env)
    else:  # everything to the log; the training's progress lines to the terminal too
        with open(log, "w") as f:
            proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for line in proc.stdout:
                f.write(line)
                if line.startswith("[train]"):
                    print("  " + line, end="", flush=True)
            proc.wait()
    if proc.returncode != 0:
        hint = f" (log: {log})" if log else ""
        sys.exit(f"demo: step failed with exit code {proc.returncode}{hint}")


def corpus_ready():
    return all(
        (SPLIT_DIR / split / "mix").is_dir()
        and len(list((SPLIT_DIR / split / "mix").glob("*.wav"))) >= n
        for split, n in CORPUS_SIZES.items()
    )


def hms(minutes):
    secs = int(round(minutes * 60))
    return f"00:{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def best_checkpoint(ckpt_dir):
    """The checkpoint with the highest validation SI-SDR in its name, else last.ckpt."""
    pattern = re.compile(r"si_sdr-(-?[0-9.]+)\.ckpt$")
    scored = [(float(m.group(1)), p) for p in ckpt_dir.glob("epoch-*.ckpt")
              if (m := pattern.search(p.name))]
    if scored:
        return max(scored)[1]
    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        return last
    sys.exit(f"demo: training wrote no checkpoint in {ckpt_dir}")


def summary_of(results_root):
    found = sorted(Path(results_root).glob("*/test_summary.json"), key=os.path.getmtime)
    if not found:
        sys.exit(f"demo: no test_summary.json under {results_root}")
    return found[-1], json.loads(found[-1].read_text())


def fmt(entry):
    if entry is None or entry.get("mean") is None:
        return "-"
    return f"{entry['mean']:.2f}"


def score_examples(separated, examples=EXAMPLES):
    """Mean scores of the mixture and of the separated files against the references."""
    import numpy as np
    import soundfile as sf

    from metrics.separation import score_item

    rows = {"unprocessed mixture": [], SHIPPED_ROW: []}
    names = sorted(p.stem for p in (examples / "mix").glob("*.wav"))
    for name in names:
        mix, fs = sf.read(examples / "mix" / f"{name}.wav")
        ref = np.stack([sf.read(examples / s / f"{name}.wav")[0] for s in ("s1", "s2")])
        est = np.stack([sf.read(separated / s / f"{name}.wav")[0] for s in ("s1", "s2")])
        rows["unprocessed mixture"].append(score_item(np.stack([mix, mix]), ref, mix, fs, "nb"))
        rows[SHIPPED_ROW].append(score_item(est, ref, mix, fs, "nb"))
    table = {}
    for row, recs in rows.items():
        table[row] = {key: {"mean": float(np.mean([v for r in recs for v in r[key]
                                                   if v is not None]))}
                      for key, _ in METRICS}  # fmt: skip
    return len(names), table


def print_table(rows):
    rows = list(rows)
    width = max([26] + [len(name) + 1 for name, _ in rows])
    print(" " * width + "".join(f"{label:>12s}" for _, label in METRICS))
    for name, metrics in rows:
        row = "".join(f"{fmt(metrics.get(key)):>12s}" for key, _ in METRICS)
        print(f"{name:{width}s}{row}")


def shipped_model_step(py, out):
    """Step 0: the shipped model on the shipped recorded-voice examples."""
    from models.pretrained import DEFAULT_MODEL, pretrained_path

    print("== 0 the shipped model: two recorded speakers it never heard, 8 kHz ==")
    if not pretrained_path(DEFAULT_MODEL).is_file():
        print(f"no shipped model at {pretrained_path(DEFAULT_MODEL)}; skipped")
        return
    t0 = time.time()
    separated = out / "pretrained"
    if separated.exists():
        shutil.rmtree(separated)
    run([py, "separate.py", EXAMPLES / "mix", separated])
    n, table = score_examples(separated)
    print(f"\n{n} example mixtures ({EXAMPLES / 'mix'}), separated in {time.time() - t0:.0f} s:")
    print_table(table.items())
    print(f"separated audio {separated}/  (s1/, s2/ per input; references in {EXAMPLES})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("DEMO_MINUTES", 20)),
                    help="training wall time (env DEMO_MINUTES; default 20)")
    ap.add_argument("--eval-items", type=int, default=10,
                    help="test mixtures scored by evaluate.py (of 50)")
    ap.add_argument("--separate-items", type=int, default=3,
                    help="test mixtures written to WAV by separate.py")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads for training (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    ap.add_argument("--fresh", action="store_true", help="delete --out first")
    ap.add_argument("--no-train", action="store_true",
                    help="only step 0: the shipped model on the shipped examples")
    args = ap.parse_args()
    py = sys.executable
    t0 = time.time()
    out = args.out
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    shipped_model_step(py, out)
    if args.no_train:
        return

    print("\n== 1/4 corpus: generated 2-speaker mixtures, WSJ0-2mix layout, 8 kHz, min ==")
    if corpus_ready():
        print(f"found {SPLIT_DIR} (delete it to regenerate)")
    else:
        run([py, "-m", "datasets.synth", "speech", "--out", CORPUS, "--n-sources", "2",
             "--fs", "8000", "--cut", "min", "--n-tr", CORPUS_SIZES["tr"],
             "--n-cv", CORPUS_SIZES["cv"], "--n-tt", CORPUS_SIZES["tt"], "--workers", "2"])

    print(f"\n== 2/4 training: the demo model (BLSTM mask network) for {args.minutes:g} min "
          "(TensorBoard: tensorboard --logdir demo_out/train) ==")
    train_dir = out / "train"
    if train_dir.exists():
        shutil.rmtree(train_dir)  # a previous demo's checkpoints would be picked up
    cmd = [py, "train.py", "experiment=demo", f"trainer.max_time={hms(args.minutes)}",
           f"hydra.run.dir={train_dir}", "trainer.enable_progress_bar=false"]
    if args.threads:
        cmd.append(f"num_threads={args.threads}")
    train_dir.mkdir(parents=True)
    run(cmd, log=train_dir / "train_stdout.log")
    ckpt = best_checkpoint(train_dir / "checkpoints")
    print(f"best checkpoint: {ckpt}")

    print(f"\n== 3/4 evaluation: first {args.eval_items} test mixtures ==")
    results = out / "results"
    # evaluate.py samples with the checkpoint's own sampler (the one it validated with)
    run([py, "evaluate.py", ckpt, "--test", "-l", args.eval_items, "--save-n", "2",
         "-o", results / "model", "--overwrite"])
    run([py, "evaluate.py", "__no_proc__", "-c", ckpt, "--test", "-l", args.eval_items,
         "-o", results / "mixture", "--overwrite"])

    print(f"\n== 4/4 separation: {args.separate_items} test mixtures to WAV ==")
    inputs = out / "inputs"
    if inputs.exists():
        shutil.rmtree(inputs)
    inputs.mkdir()
    for wav in sorted((SPLIT_DIR / "tt" / "mix").glob("*.wav"))[: args.separate_items]:
        shutil.copy(wav, inputs / wav.name)
    run([py, "separate.py", "--model", ckpt, inputs, out / "separated"])

    model_path, model = summary_of(results / "model")
    mix_path, mix = summary_of(results / "mixture")
    print(f"\n== demo results: {model['n_ok']} test mixtures, "
          f"{time.time() - t0:.0f} s in all ==")
    print_table([("unprocessed mixture", mix["metrics"]),
                 ("DiffSep (demo model)", model["metrics"])])
    print(f"\ncheckpoint      {ckpt}")
    print(f"scores          {model_path.parent}/ and {mix_path.parent}/")
    print(f"separated audio {out / 'separated'}/  (s1/, s2/ per input)")
    print(f"TensorBoard     tensorboard --logdir {train_dir}")


if __name__ == "__main__":
    main()

"""GPU smoke run of the paper's recipe, in one script (about 5 minutes on one large GPU).

    python bench/gpu_smoke.py [--out gpu_smoke] [--steps 200] [--dry-run]

1. generates a small two-speaker corpus (`python -m datasets.synth speech`, 8 kHz, the
   max cut that `icassp-separation` uses);
2. trains `python train.py experiment=icassp-separation` (NCSN++ nf 128, batch 6 of
   5-s crops, 2 accumulation steps) on one GPU for `--steps` optimizer steps, in fp32
   (with TF32) and in bf16 mixed precision, validation off; steps per second (after 10
   warm-up steps) and peak memory come from `training.callbacks.StepStats`;
3. separates 4-s mixtures with the bf16 run's checkpoint at 60 network evaluations
   (N = 30, one corrector step), batch 1 and batch 8, and reports the real-time factor;
4. with two or more GPUs, repeats step 2 (bf16) as a 2-process DDP run.

`--dry-run` runs the same steps on the CPU with tiny sizes (tiny NCSN++, 3 steps, N = 2):
it checks the script end to end (the test suite runs it) and its numbers mean nothing.
Everything is printed as one table and written to `{out}/gpu_smoke.json`.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY = ["model.score_model.backbone.nf=16", "model.score_model.backbone.ch_mult=[1,2,2,2]",
        "model.score_model.backbone.num_res_blocks=1",
        "model.score_model.backbone.attn_resolutions=[]",
        "model.score_model.frame_multiple=8", "datamodule.train.max_len_s=0.5",
        "datamodule.batch_size=2", "trainer.accumulate_grad_batches=1"]  # fmt: skip


def run(cmd, log):
    """Run a repository command, its output to `log`; stop with the log's tail on failure."""
    env = dict(os.environ)
    with open(log, "w") as f:
        proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, stdout=f,
                              stderr=subprocess.STDOUT)  # fmt: skip
    if proc.returncode != 0:
        tail = Path(log).read_text()[-3000:]
        sys.exit(f"{Path(sys.argv[0]).stem}: {' '.join(map(str, cmd[:4]))} ... failed "
                 f"(exit {proc.returncode}), log {log}:\n{tail}")


def train(out, corpus, name, steps, precision, devices, dry):
    run_dir = out / name
    cmd = [sys.executable, "train.py", "experiment=icassp-separation",
           f"datamodule.train.root={corpus}", f"trainer.max_steps={steps}",
           f"trainer.precision={precision}", "trainer.limit_val_batches=0",
           "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
           "checkpoint.every_n_train_steps=1000000", f"hydra.run.dir={run_dir}",
           "+callbacks.stats._target_=training.callbacks.StepStats",
           f"+callbacks.stats.path={run_dir / 'stats.json'}",
           f"+callbacks.stats.skip={1 if dry else 10}"]  # fmt: skip
    if dry:
        cmd += ["trainer=cpu", "datamodule.num_workers=0", *TINY]
    elif devices == 1:
        cmd += ["trainer=default", "datamodule.num_workers=6"]
    else:
        cmd += [f"trainer.devices={devices}", "datamodule.num_workers=4"]
    t0 = time.time()
    run(cmd, out / f"{name}.log")
    stats = json.loads((run_dir / "stats.json").read_text())
    stats["wall_s"] = round(time.time() - t0, 1)
    return stats, run_dir / "checkpoints" / "last.ckpt"


def separation_rtf(ckpt, corpus, dry, batch_sizes=(1, 8)):
    """Real-time factor of N = 30 (60 network evaluations) on 4-s test mixtures."""
    import torch

    from datasets.wsj0_mix import WSJ0Mix
    from models.loading import load_model

    device = "cpu" if dry else "cuda"
    model = load_model(ckpt, device)
    fs, seconds = 8000, (0.5 if dry else 4.0)
    n = int(fs * seconds)
    ds = WSJ0Mix(corpus, 2, fs, "max", "tt")
    mixes = [ds[i][0][..., :n] for i in range(len(ds))]
    mixes = [torch.nn.functional.pad(m, (0, n - m.shape[-1])) for m in mixes]
    out = {}
    for b in batch_sizes:
        batch = torch.stack([mixes[i % len(mixes)] for i in range(b)]).to(device)
        opts = dict(N=2 if dry else 30, corrector_steps=1)
        model.separate(batch, **opts)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, nfe, _ = model.separate(batch, **opts)
        if device == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        out[f"batch_{b}"] = {"nfe": int(nfe), "seconds": secs, "rtf": secs / (b * seconds)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_smoke"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: test the script")
    args = ap.parse_args(argv)
    dry = args.dry_run
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = 3 if dry else args.steps
    import torch

    n_gpu = 0 if dry else torch.cuda.device_count()
    if not dry and n_gpu == 0:
        sys.exit("gpu_smoke: no GPU visible; use --dry-run to check the script on a CPU")
    t0 = time.time()
    corpus = out / "wsj0_mix"
    sizes = ("8", "2", "2") if dry else ("300", "10", "16")
    run([sys.executable, "-m", "datasets.synth", "speech", "--out", corpus, "--fs", "8000",
         "--cut", "max", "--n-tr", sizes[0], "--n-cv", sizes[1], "--n-tt", sizes[2],
         "--workers", "1" if dry else "8", "--no-progress"], out / "corpus.log")  # fmt: skip
    report = {"dry_run": dry, "gpus": n_gpu, "steps": steps,
              "device": "cpu" if dry else torch.cuda.get_device_name(0)}  # fmt: skip
    bf16 = "bf16-mixed"
    report["fp32"], _ = train(out, corpus, "fp32", steps, "32", 1, dry)
    report["bf16"], ckpt = train(out, corpus, "bf16", steps, bf16, 1, dry)
    report["separation_60nfe"] = separation_rtf(ckpt, corpus, dry)
    if n_gpu >= 2:
        report["ddp2_bf16"], _ = train(out, corpus, "ddp2", max(20, steps // 4), bf16, 2, dry)
    report["total_s"] = round(time.time() - t0, 1)
    (out / "gpu_smoke.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"== gpu smoke ({report['device']}{', DRY RUN' if dry else ''}): "
          f"{steps} steps of icassp-separation ==")
    print(f"{'run':12s}{'steps/s':>10s}{'peak GiB':>10s}{'wall s':>9s}")
    for name in ("fp32", "bf16", "ddp2_bf16"):
        if name in report:
            s = report[name]
            peak = "-" if s["peak_memory_gib"] is None else f"{s['peak_memory_gib']:.2f}"
            sps = "-" if s["steps_per_s"] is None else f"{s['steps_per_s']:.2f}"
            print(f"{name:12s}{sps:>10s}{peak:>10s}{s['wall_s']:>9.1f}")
    for b, r in report["separation_60nfe"].items():
        print(f"separation {b}: {r['nfe']} NFE, RTF {r['rtf']:.4f}")
    print(f"total {report['total_s']} s; {out / 'gpu_smoke.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

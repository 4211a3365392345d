"""CPU benchmark of the score networks: evaluation time, training step, memory, FLOP rate.

    .venv/bin/python bench/bench_networks.py [--configs tiny ncsnpp_small ncsnpp] [--threads N]
    .venv/bin/python bench/bench_networks.py --configs tiny frame_blstm --threads 1

Each (config, task) runs in a fresh subprocess so that its peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss` after the run minus before it, i.e.
the growth of the peak RSS over the built model) is not masked by earlier tasks.
FLOPs come from torch.utils.flop_counter.FlopCounterMode (2 per multiply-add).
The reference rate is the best of 5 fp32 2048 x 2048 torch.mm, timed in the same
subprocess right before the task, both in wall time and in process CPU time: on a
shared machine the CPU-time ratio ("% mm cpu") is the steadier efficiency figure.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]

FS = 8000
TASKS = ("eval_1s", "eval_4s", "train_b4_2s", "train_b1_2s")  # b1: the demo's batch


def build(name: str, n_sources: int = 2) -> torch.nn.Module:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(ROOT / "config"), version_base="1.3"):
        cfg = compose(
            config_name=None,
            overrides=[f"+model/score_model={name}", f"+n_sources={n_sources}"],
        )
    return instantiate(cfg.model.score_model)


def matmul_rate(n: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """fp32 torch.mm rate in GFLOP per wall second and per CPU second (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return 2 * n**3 / wall / 1e9, 2 * n**3 / cpu / 1e9


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(name: str, task: str, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build(name)
    n_params = sum(p.numel() for p in model.parameters())
    K = model.n_sources
    if task.startswith("eval"):
        B, L = 1, FS * int(task.split("_")[1].rstrip("s"))
    else:
        B, L = int(task.split("_")[1][1:]), 2 * FS
    x, mix = torch.randn(B, K, L), torch.randn(B, 1, L)
    t = torch.rand(B) * 0.97 + 0.03
    if task.startswith("eval"):
        model.eval()

        def step():
            with torch.inference_mode():
                model(x, t, mix)
    else:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            model(x, t, mix).pow(2).mean().backward()
            opt.step()

    mm_wall, mm_cpu = matmul_rate()
    rss0 = _maxrss_mib()
    # the counted step doubles as warm-up (allocator, oneDNN primitive cache, Adam state)
    with FlopCounterMode(display=False) as counter:
        step()
    rss1 = _maxrss_mib()
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return dict(
        config=name, task=task, params=n_params, gflop=counter.get_total_flops() / 1e9,
        wall=statistics.median(walls), cpu=statistics.median(cpus),
        peak_mib=max(rss1, _maxrss_mib()) - rss0, mm_wall=mm_wall, mm_cpu=mm_cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "ncsnpp_small", "ncsnpp"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats)))
        return

    rate, rate_cpu = matmul_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 2048^3 torch.mm: "
          f"{rate:.1f} GFLOP/s wall, {rate_cpu:.1f} GFLOP per CPU second")
    head = (f"{'config':<13}{'params':>9}  {'task':<12}{'GFLOP':>7}{'wall s':>8}{'GFLOP/s':>8}"
            f"{'mm':>6}{'% mm':>6}{'cpu s':>7}{'% mm cpu':>9}{'peak MiB':>9}")
    print(head)
    print("-" * len(head))
    env = dict(os.environ)
    for name in args.configs:
        for task in args.tasks:
            cmd = [sys.executable, __file__, "--worker", name, task, "--repeats",
                   str(args.repeats)] + (["--threads", str(args.threads)] if args.threads else [])
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode:
                print(f"{name:<13} {task}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            gfs, gfs_cpu = r["gflop"] / r["wall"], r["gflop"] / r["cpu"]
            print(f"{r['config']:<13}{r['params'] / 1e6:>8.2f}M  {r['task']:<12}{r['gflop']:>7.1f}"
                  f"{r['wall']:>8.2f}{gfs:>8.1f}{r['mm_wall']:>6.0f}"
                  f"{100 * gfs / r['mm_wall']:>5.0f}%"
                  f"{r['cpu']:>7.2f}{100 * gfs_cpu / r['mm_cpu']:>8.0f}%{r['peak_mib']:>9.0f}")
    print("wall s: median wall time of one step; mm: torch.mm GFLOP/s measured just before;")
    print("cpu s: process CPU time of the step (all threads); % mm cpu: GFLOP per CPU second")
    print("over torch.mm GFLOP per CPU second; peak MiB: growth of ru_maxrss over the built")
    print("model during the step (fresh process per row).")


if __name__ == "__main__":
    main()

"""Real-time factor of separation on this machine (random weights: timing only).

    python bench/bench_separate.py [--score-models tiny ncsnpp] [--steps 5 10 30]
                                   [--seconds 4] [--device cpu] [--threads 2]

For each score network (a ``config/model/score_model`` node, in the default DiffSep
model with the mixing SDE) and each number of sampler steps N, times
``Separator.separate_tensor`` on ``--seconds`` of noise at the model rate (one segment
when ``--segment`` is at least that long) and prints wall time, RTF (wall time / audio
duration) and the number of network evaluations (NFE); a row expected to take longer than
``--budget`` seconds is extrapolated from the previous one (marked ``*``). Timings on a
shared machine are noisy.
"""

import argparse
import os
import time
from pathlib import Path

import torch

from evaluation.separator import Separator

REPO = Path(__file__).resolve().parents[1]


def build_model(score_model: str, n_sources: int, fs: int, config_dir: Path):
    """DiffSepModel with random weights, composed from the project's Hydra configs."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = [
        "+model=default", f"model/score_model={score_model}",
        f"+n_sources={n_sources}", f"+fs={fs}", "+name=bench",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name=None, overrides=overrides)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    return instantiate(cfg.model).eval()


class CountingModel:
    """Wraps a model to record the number of network evaluations of each call."""

    def __init__(self, model):
        self.model = model
        self.fs, self.n_sources, self.source_names = model.fs, model.n_sources, model.source_names
        self.nfe = 0

    def parameters(self):
        return self.model.parameters()

    def separate(self, mix, **kwargs):
        est, nfe, inter = self.model.separate(mix, **kwargs)
        self.nfe += int(nfe)
        return est, nfe, inter


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--score-models", nargs="+", default=["tiny", "ncsnpp"])
    p.add_argument("--steps", nargs="+", type=int, default=[5, 10, 30])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fs", type=int, default=8000)
    p.add_argument("--n-sources", type=int, default=2)
    p.add_argument("--segment", type=float, default=4.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--config-dir", type=Path, default=REPO / "config")
    p.add_argument("--budget", type=float, default=600.0,
                   help="extrapolate instead of running a measurement expected to exceed this (s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"host: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")  # fmt: skip
    print(f"audio: {args.seconds} s at {args.fs} Hz, K = {args.n_sources}, "
          f"segment {args.segment} s, random weights (timing only)\n")  # fmt: skip
    header = f"{'score model':<12} {'params':>8} {'N':>4} {'NFE':>5} {'wall s':>8} {'RTF':>8}"
    print(header)
    print("-" * len(header))
    mix = torch.randn(int(args.seconds * args.fs)) * 0.1
    extrapolated = False
    for name in args.score_models:
        model = build_model(name, args.n_sources, args.fs, args.config_dir.resolve())
        model = model.to(args.device)
        n_params = sum(p.numel() for p in model.score_model.parameters()) / 1e6
        counting = CountingModel(model)
        per_nfe = nfe_per_step = None  # from the last measurement of this network
        for N in args.steps:
            if per_nfe is not None and per_nfe * nfe_per_step * N > args.budget:
                # Too slow to measure here: the sampler's cost is linear in the NFE.
                nfe = round(nfe_per_step * N)
                wall = per_nfe * nfe
                print(f"{name:<12} {n_params:>7.2f}M {N:>4} {nfe:>5} {wall:>8.1f}* "
                      f"{wall / args.seconds:>7.2f}*", flush=True)  # fmt: skip
                extrapolated = True
                continue
            sep = Separator(counting, segment=args.segment, batch_size=4, N=N, device=args.device)
            if N == args.steps[0]:  # warm-up: first-call allocations and kernel selection
                Separator(counting, segment=args.segment, N=1).separate_tensor(mix[: args.fs])
            counting.nfe = 0
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            sep.separate_tensor(mix, args.fs)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            per_nfe, nfe_per_step = wall / counting.nfe, counting.nfe / N
            rtf = wall / args.seconds
            print(f"{name:<12} {n_params:>7.2f}M {N:>4} {counting.nfe:>5} {wall:>8.2f} {rtf:>8.3f}",
                  flush=True)  # fmt: skip
    if extrapolated:
        print(f"\n* extrapolated from the time per NFE above (over --budget {args.budget} s)")


if __name__ == "__main__":
    main()

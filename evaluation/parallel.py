"""Worker processes of `evaluate_mp.py` (torch.multiprocessing, spawn).

Worker `rank` of `n` takes the dataset indices with `index % n == rank` that have
no finished record yet; records go straight to the shared item store, so a
killed run restarts where it stopped.
"""

import ctypes
import os
import signal
import sys

import torch
import torch.multiprocessing as mp

from evaluation.session import EvalSession


def worker_devices(n_workers=None):
    """One worker per GPU when there are GPUs, else 2 CPU workers (or `n_workers`)."""
    n_gpu = torch.cuda.device_count()
    n = n_workers or (n_gpu if n_gpu else 2)
    return [f"cuda:{r % n_gpu}" if n_gpu else "cpu" for r in range(n)]


def die_with_parent(parent_pid: int) -> None:
    """Make the kernel kill this process when its parent dies (Linux; elsewhere a no-op).

    A worker left running after its parent was killed would go on writing records
    while a rerun starts new workers on the same items (and the same GPU).
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the call above took effect
        os._exit(1)


def _worker(rank, spec, devices, todo, threads, stop_after, parent_pid=None):
    if parent_pid is not None:
        die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    session = EvalSession(**spec, device=devices[rank])
    n = len(devices)
    remaining = stop_after
    for split, indices in todo.items():
        if remaining is not None and remaining <= 0:
            os._exit(75)  # tests: the budget of records ran out, stop like a kill
        mine = [i for i in indices if i % n == rank]
        done = session.run(split, mine, stop_after=remaining)
        print(f"[worker {rank}] {split}: {done} utterance(s)", file=sys.stderr, flush=True)
        if remaining is not None:
            remaining -= done


def run_workers(session, todo, devices, stop_after=None):
    """Process `todo` ({split: indices}) on `devices` (one worker each); True if all ended.

    Workers are joined one by one, so a worker that dies does not take the others
    down (as torch's `start_processes` would): their records are kept, and a
    second run only redoes the dead worker's remaining slice.
    """
    todo = {s: list(ix) for s, ix in todo.items() if ix}
    if not todo:
        return True
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(rank, session.spec, devices, todo, threads,
                                               stop_after, os.getpid()))
             for rank in range(len(devices))]
    for p in procs:
        p.start()
    failed = []
    for rank, p in enumerate(procs):
        p.join()
        if p.exitcode != 0:
            failed.append(f"worker {rank} (exit code {p.exitcode})")
    if failed:
        print(f"{', '.join(failed)} stopped early; run the same command again to resume",
              file=sys.stderr)
    return not failed

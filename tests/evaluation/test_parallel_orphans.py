"""evaluate_mp.py workers die with their parent (no orphans after a kill)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PARENT = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time
    from evaluation.parallel import die_with_parent

    def child(parent_pid, protect):
        if protect:
            die_with_parent(parent_pid)
        time.sleep(120)

    if __name__ == "__main__":
        p = mp.get_context("spawn").Process(target=child, args=(os.getpid(), {protect}))
        p.start()
        print(p.pid, flush=True)
        time.sleep(120)
""")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split()[2] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
@pytest.mark.parametrize("protect", [False, True])
def test_worker_outlives_a_killed_parent_only_without_the_guard(tmp_path, protect):
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(protect=protect))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # let the child reach its guard
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + (10 if protect else 2)
    while alive(child) and time.time() < deadline:
        time.sleep(0.1)
    try:
        assert alive(child) is (not protect)  # unguarded: the orphan of issue 21
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)

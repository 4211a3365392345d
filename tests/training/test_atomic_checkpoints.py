"""Checkpoints are written atomically: a kill or a full disk never corrupts the last one."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.loading import NotADiffSepCheckpoint, read_checkpoint
from training.callbacks import atomic_save, partial_path, remove_partials

ROOT = Path(__file__).resolve().parents[2]


class FakeTrainer:
    """What atomic_save needs of a Trainer; `save_checkpoint` is torch.save of `state`."""

    is_global_zero = True

    def __init__(self, fail_after_bytes=None):
        self.strategy = SimpleNamespace(barrier=lambda name=None: None)
        self.fail_after_bytes = fail_after_bytes

    def save_checkpoint(self, path, weights_only=False):
        torch.save({"step": 2, "w": torch.ones(1000)}, path)
        if self.fail_after_bytes is not None:
            with open(path, "r+b") as f:
                f.truncate(self.fail_after_bytes)
            raise OSError(28, "No space left on device")


def test_full_disk_keeps_the_previous_checkpoint_and_no_temporary(tmp_path):
    last = tmp_path / "last.ckpt"
    torch.save({"step": 1}, last)
    with pytest.raises(OSError, match="No space left"):
        atomic_save(FakeTrainer(fail_after_bytes=100), last, weights_only=False)
    assert torch.load(last, weights_only=True) == {"step": 1}
    assert list(tmp_path.iterdir()) == [last]
    atomic_save(FakeTrainer(), last, weights_only=False)
    assert torch.load(last, weights_only=True)["step"] == 2


def test_stale_temporaries_are_removed(tmp_path):
    stale = partial_path(tmp_path / "epoch-001.ckpt")
    stale.write_bytes(b"PK\x03\x04half")
    keep = tmp_path / "last.ckpt"
    keep.write_bytes(b"x")
    assert remove_partials(tmp_path) == [stale]
    assert list(tmp_path.iterdir()) == [keep]


def test_truncated_checkpoint_is_told_apart(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "diffsep_config": {}}, good)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    read_checkpoint(good)
    with pytest.raises(NotADiffSepCheckpoint, match="truncated or corrupt"):
        read_checkpoint(bad)


CHILD = textwrap.dedent("""
    import sys, torch
    from training.callbacks import atomic_save
    from tests.training.test_atomic_checkpoints import FakeTrainer
    class Big(FakeTrainer):
        def save_checkpoint(self, path, weights_only=False):
            torch.save({{"step": self.i, "w": torch.full((4_000_000,), float(self.i))}}, path)
    t = Big()
    for i in range(10_000):
        t.i = i
        atomic_save(t, {path!r}, weights_only=False)
""")


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_an_unloadable_checkpoint(tmp_path):
    last = tmp_path / "last.ckpt"
    script = CHILD.format(path=str(last))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = torch.Generator().manual_seed(0)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
        deadline = time.time() + 60
        while not last.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.05 + 0.4 * float(torch.rand((), generator=rng)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = torch.load(last, weights_only=True)  # never half-written
        assert float(ckpt["w"][0]) == float(ckpt["w"][-1]) == ckpt["step"]
        remove_partials(tmp_path)
        assert list(tmp_path.iterdir()) == [last]

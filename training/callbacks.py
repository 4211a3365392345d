"""Callbacks of train.py: the run config in every checkpoint, and an always-fresh last.ckpt.

Every checkpoint is written atomically: to a hidden temporary file in its own folder,
flushed to disk, then renamed over the final name. A run killed during a save, or a
full disk, leaves the previous file intact and at most a `.<name>.partial` file, which
the next run in that folder removes.
"""

import json
import os
import random
import time
from pathlib import Path
from weakref import proxy

import numpy as np
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback, Checkpoint, ModelCheckpoint

from models.loading import CONFIG_KEY

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


def remove_partials(dirpath) -> list[Path]:
    """Delete the temporary files of interrupted saves in `dirpath`; returns them."""
    found = sorted(Path(dirpath).glob(f".*.ckpt{PARTIAL_SUFFIX}")) if dirpath else []
    for p in found:
        p.unlink(missing_ok=True)
    return found


def atomic_save(trainer, path, weights_only: bool) -> None:
    """`trainer.save_checkpoint` through a temporary file and a rename (rank 0 renames)."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        trainer.save_checkpoint(tmp, weights_only=weights_only)
        if trainer.is_global_zero:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        if trainer.is_global_zero:
            tmp.unlink(missing_ok=True)
        raise
    trainer.strategy.barrier("atomic_save")


class AtomicModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (best checkpoints), each file written atomically."""

    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero:
            remove_partials(self.dirpath)

    def _save_checkpoint(self, trainer, filepath):
        atomic_save(trainer, filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class StoreConfig(Callback):
    """Put the resolved run config into every checkpoint (``models.loading`` reads it)."""

    def __init__(self, config):
        self.config = OmegaConf.to_container(config, resolve=True)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[CONFIG_KEY] = self.config


class LastCheckpoint(Checkpoint):
    """Write ``last.ckpt`` every ``every_n_train_steps`` steps, after validation, at the end of
    every epoch and at the end.

    A single writer keeps last.ckpt always the newest state (two ModelCheckpoint
    callbacks with save_last would race and version the file as last-v1.ckpt); a
    run killed at any point loses at most the steps since the last write.

    As a `Checkpoint`, Lightning runs it after the callbacks that are not checkpoints and
    after the ModelCheckpoint listed before it, so the file it writes at the end of an
    epoch already knows that epoch's best checkpoint.
    """

    def __init__(self, dirpath, every_n_train_steps=1000, filename="last.ckpt"):
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        self.path = Path(dirpath) / filename
        self.every = int(every_n_train_steps)
        self._saved_step = None

    def setup(self, trainer, pl_module, stage):
        if trainer.is_global_zero:
            remove_partials(self.path.parent)

    def _save(self, trainer, again=False):
        if trainer.sanity_checking or (trainer.global_step == self._saved_step and not again):
            return
        # Every rank calls it: the strategy writes on rank 0 and synchronises. The full
        # training state (optimiser, loops, callbacks), so that resuming continues the run.
        atomic_save(trainer, self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module):
        self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        # ModelCheckpoint saves an end-of-epoch validation's best checkpoint here, after
        # on_validation_end: write again so that last.ckpt lists it.
        self._save(trainer, again=True)

    def on_train_end(self, trainer, pl_module):
        self._save(trainer)


class RNGState(Callback):
    """Save the random number generators with every checkpoint and restore them on resume.

    Lightning restores weights, optimizer, schedulers, EMA and loop counters but not the
    generators, so a resumed run would draw other crops, times and noises than the run it
    continues. With them restored, a run resumed from a checkpoint written at the end of
    an epoch (after validation: the `last.ckpt` of every epoch) repeats the uninterrupted
    run step for step. A checkpoint written in the middle of an epoch resumes with a new
    pass over the data for the rest of that epoch: its data order differs from there on.
    With several DDP ranks each rank's generators are offset by its rank after seeding
    and after a restore, so ranks draw different times, noises and remixes.
    """

    def setup(self, trainer, pl_module, stage):
        # DDP ranks start from one seed (the same initial weights and EMA); from here on
        # each rank draws its own times, noises and examples. Lightning restores a
        # checkpoint after this hook, and `load_state_dict` then offsets by rank again.
        self.rank, self.world = trainer.global_rank, trainer.world_size
        if self.world > 1:
            _offset_generators(self.rank)

    def state_dict(self):
        np_state = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": _to_lists(random.getstate()),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict):
        torch.set_rng_state(state_dict["torch"])
        name, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(_to_tuples(state_dict["python"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        if getattr(self, "world", 1) > 1:  # the checkpoint holds rank 0's generators
            _offset_generators(self.rank)


def _offset_generators(rank: int) -> None:
    """Reseed every generator from its current state and `rank` (deterministic)."""
    seed = int(torch.randint(2**62, ())) + 7919 * rank
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple | list) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


class StepStats(Callback):
    """Training speed and peak memory, written to `path` (JSON) at the end of training.

    Steps per second are measured from the end of step `skip` (warm-up: cuDNN autotuning,
    allocator growth) to the end of the last step; peak memory is CUDA's
    `max_memory_allocated` (None on CPU).
    """

    def __init__(self, path, skip: int = 10):
        self.path, self.skip = Path(path), int(skip)
        self._t0 = self._steps0 = None

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.skip:
            self._sync(pl_module)
            self._t0, self._steps0 = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer, pl_module):
        self._sync(pl_module)
        steps = trainer.global_step - (self._steps0 or 0)
        secs = time.perf_counter() - self._t0 if self._t0 is not None else None
        cuda = pl_module.device.type == "cuda"
        stats = {"steps_timed": steps, "seconds": secs,
                 "steps_per_s": steps / secs if secs else None,
                 "peak_memory_gib": torch.cuda.max_memory_allocated(pl_module.device) / 2**30
                 if cuda else None,
                 "precision": str(trainer.precision), "device": str(pl_module.device),
                 "world_size": trainer.world_size}  # fmt: skip
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(stats, indent=1) + "\n")


class ProgressPrinter(Callback):
    """A line on stdout every `every_s` seconds while training, e.g.

        [train] step 1250  loss 0.352  val SI-SDRi +2.10 dB  12:31 elapsed, 07:29 left

    for runs whose progress bar is off (logs, `make demo`). The loss is the latest logged
    `train/loss_step`, the SI-SDRi the latest validation's; the time left comes from
    `trainer.max_time` when it is set.
    """

    def __init__(self, every_s: float = 30.0):
        self.every_s = float(every_s)
        self._t0 = self._last = None

    def on_train_start(self, trainer, pl_module):
        self._t0 = self._last = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if self._last is None or now - self._last < self.every_s or not trainer.is_global_zero:
            return
        self._last = now
        m = trainer.callback_metrics
        parts = [f"[train] step {trainer.global_step}"]
        if "train/loss_step" in m:
            parts.append(f"loss {float(m['train/loss_step']):.3f}")
        if "val/si_sdri" in m:
            parts.append(f"val SI-SDRi {float(m['val/si_sdri']):+.2f} dB")
        elapsed = f"{_mmss(now - self._t0)} elapsed"
        timer = next((c for c in trainer.callbacks if type(c).__name__ == "Timer"), None)
        left = timer.time_remaining() if timer is not None else None
        parts.append(elapsed if left is None else f"{elapsed}, {_mmss(left)} left")
        print("  ".join(parts), flush=True)


def _mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"

"""Callbacks of train.py: the run config in every checkpoint, and an always-fresh last.ckpt.

Every checkpoint is written atomically: to a hidden temporary file in its own folder,
flushed to disk, then renamed over the final name. A run killed during a save, or a
full disk, leaves the previous file intact and at most a `.<name>.partial` file, which
the next run in that folder removes.
"""

import os
from pathlib import Path
from weakref import proxy

from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

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


class LastCheckpoint(Callback):
    """Write ``last.ckpt`` every ``every_n_train_steps`` steps, after validation and at the end.

    A single writer keeps last.ckpt always the newest state (two ModelCheckpoint
    callbacks with save_last would race and version the file as last-v1.ckpt); a
    run killed at any point loses at most the steps since the last write.
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

    def _save(self, trainer):
        if trainer.sanity_checking or trainer.global_step == self._saved_step:
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

    def on_train_end(self, trainer, pl_module):
        self._save(trainer)

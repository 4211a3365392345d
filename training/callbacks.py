"""Callbacks of train.py: the run config in every checkpoint, and an always-fresh last.ckpt."""

from pathlib import Path

from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback

from models.loading import CONFIG_KEY


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

    def _save(self, trainer):
        if trainer.sanity_checking or trainer.global_step == self._saved_step:
            return
        # Every rank calls it: the strategy writes on rank 0 and synchronises. The full
        # training state (optimiser, loops, callbacks), so that resuming continues the run.
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module):
        self._save(trainer)

    def on_train_end(self, trainer, pl_module):
        self._save(trainer)

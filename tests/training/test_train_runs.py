"""Lightning runs on CPU: every strategy, logging, EMA use, save/load/resume."""

import copy

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from models.loading import NotADiffSepCheckpoint, load_model
from tests.training.fixtures import FAST_MODEL, compose_config, toy_loader
from training.callbacks import LastCheckpoint, StoreConfig

STRATEGIES = [
    ["model.source_order=random"],
    ["model.source_order=power"],
    ["model.source_order=pit"],
    ["model.source_order=pit", "model.pit_threshold=2.0"],
    ["model.source_order=fixed", "model.time_sampling=varprop"],
    ["model.train_strategy=prior_mismatch_pit", "model.mismatch_p=1.0"],
    ["model.train_strategy=prior_mismatch_fraction", "model.mismatch_p=1.0",
     "model.source_order=fixed"],
    ["model.init_hack=5", "model.init_hack_p=0.5"],
    ["model.init_hack=4"],
    ["model.train_strategy=prior_mismatch_pit", "model.mismatch_p=0.5", "model.refine_p=0.5"],
]


def trainer(tmp_path, **kwargs):
    opts = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    opts.update(kwargs)
    # LastCheckpoint is the run's checkpoint callback where given; else none at all
    opts["enable_checkpointing"] = any(
        isinstance(c, LastCheckpoint) for c in opts.get("callbacks") or [])
    return pl.Trainer(**opts)


def model_and_config(*overrides, output_dir="unused"):
    from hydra.utils import instantiate

    cfg = compose_config([*FAST_MODEL, f"paths.output_dir={output_dir}", *overrides])
    return instantiate(cfg.model), cfg


@pytest.mark.parametrize("overrides", STRATEGIES, ids=lambda o: ",".join(o))
def test_fast_dev_run_every_strategy(tmp_path, overrides):
    torch.manual_seed(0)
    model, _ = model_and_config(*overrides)
    before = [p.detach().clone() for p in model.parameters()]
    tr = trainer(tmp_path, fast_dev_run=True)
    tr.fit(model, train_dataloaders=toy_loader(4), val_dataloaders=toy_loader(2))
    assert tr.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    metrics = tr.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/si_sdr"])


class CheckWeights(Callback):
    """Records whether validation sees the EMA weights and training its own weights."""

    def __init__(self):
        self.val_uses_ema, self.train_uses_raw = [], []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        name, w = next(iter(pl_module.score_model.state_dict().items()))
        self.val_uses_ema.append(torch.equal(w, pl_module.ema.shadow[name]))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        assert not pl_module.ema.swapped_in
        self.train_uses_raw.append(True)


def test_logging_ema_and_clipping(tmp_path):
    torch.manual_seed(0)
    model, _ = model_and_config("model.lr_warmup_steps=4", "model.log_audio_n=1",
                                "model.ema_decay=0.5")
    check = CheckWeights()
    logger = TensorBoardLogger(str(tmp_path), name="", version="")
    tr = trainer(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1,
                 logger=logger, log_every_n_steps=1, gradient_clip_val=1e-8, callbacks=[check])
    tr.fit(model, train_dataloaders=toy_loader(8), val_dataloaders=toy_loader(2))
    m = tr.callback_metrics
    for key in ("train/loss", "val/loss", "val/si_sdr", "val/si_sdri", "train/grad_norm"):
        assert key in m and torch.isfinite(m[key]), key
    assert float(m["train/grad_norm"]) > 1e-6  # logged before clipping at 1e-8
    assert check.val_uses_ema == [True, True] and len(check.train_uses_raw) == 6
    base = 1.0e-4
    # Warm-up over 4 steps, then the configured rate.
    assert tr.optimizers[0].param_groups[0]["lr"] == pytest.approx(base)
    acc = EventAccumulator(str(tmp_path), size_guidance={"audio": 0, "images": 0}).Reload()
    lrs = [e.value for e in acc.Scalars("train/lr")]
    assert lrs[:5] == pytest.approx([base / 4, base / 2, 3 * base / 4, base, base])
    tags = acc.Tags()
    assert "val_example_0/mix" in tags["audio"] and "val_example_0/est_s1" in tags["audio"]
    assert "val_example_0/spectrogram" in tags["images"]
    assert "val/si_sdri" in tags["scalars"]


class Snapshot(Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.opt = copy.deepcopy(trainer.optimizers[0].state_dict())  # live tensors
        self.ema_updates = pl_module.ema.num_updates


class Crash(Callback):
    """Kills the run when it reaches ``step``."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_killed_run_save_load_resume(tmp_path):
    torch.manual_seed(0)
    model, cfg = model_and_config(output_dir=str(tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    tr = trainer(tmp_path, max_steps=10, limit_val_batches=0,
                 callbacks=[StoreConfig(cfg), LastCheckpoint(last.parent, 2), Crash(3)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        tr.fit(model, train_dataloaders=toy_loader(8))
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 2  # killed after step 3: lost one step only
    assert saved["ema"]["num_updates"] == 2

    loaded = load_model(last)
    assert not loaded.training and loaded.exp_name == "default"
    assert loaded.config.model.sde.sigma_max == cfg.model.sde.sigma_max
    raw = {k.removeprefix("score_model."): v for k, v in saved["state_dict"].items()}
    differs = False
    for name, w in loaded.score_model.state_dict().items():
        if name in saved["ema"]["shadow"]:
            assert torch.equal(w, saved["ema"]["shadow"][name]), name  # EMA swapped in
            differs |= not torch.equal(w, raw[name])
    assert differs

    fresh, _ = model_and_config(output_dir=str(tmp_path))
    snap = Snapshot()
    tr2 = trainer(tmp_path, max_steps=5, limit_val_batches=0,
                  callbacks=[snap, LastCheckpoint(last.parent, 2)])
    tr2.fit(fresh, train_dataloaders=toy_loader(8), ckpt_path=str(last))
    assert snap.step == 2 and snap.ema_updates == 2 and tr2.global_step == 5
    want, got = saved["optimizer_states"][0]["state"], snap.opt["state"]
    assert want.keys() == got.keys()
    for idx in want:
        assert torch.equal(want[idx]["exp_avg"], got[idx]["exp_avg"])
        assert float(want[idx]["step"]) == float(got[idx]["step"]) == 2
    for name, w in fresh.ema.state_dict()["shadow"].items():
        assert not torch.equal(w, saved["ema"]["shadow"][name]) or "num_batches" in name
    assert torch.load(last, weights_only=True)["global_step"] == 5  # written at the end


def test_load_model_rejects_foreign_files(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(NotADiffSepCheckpoint, match="not a DiffSep checkpoint"):
        load_model(junk)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "epoch": 1}, other)
    with pytest.raises(NotADiffSepCheckpoint, match="diffsep_config"):
        load_model(other)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.ckpt")

"""ProgressPrinter: the progress line of runs without a progress bar."""

import pytorch_lightning as pl
import torch

from tests.training.fixtures import build_model, toy_loader
from training.callbacks import ProgressPrinter


def test_progress_lines_show_step_loss_and_time_left(capsys):
    torch.manual_seed(0)
    model = build_model()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=4, max_time="00:00:10:00",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1,
                         callbacks=[ProgressPrinter(every_s=0.0)])  # fmt: skip
    trainer.fit(model, train_dataloaders=toy_loader(8))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[train]")]
    assert len(lines) == 4
    assert lines[-1].startswith("[train] step 4  loss ")
    assert "elapsed" in lines[-1] and lines[-1].endswith("left")
    minutes_left = int(lines[-1].split(", ")[-1].split(":")[0])
    assert 8 <= minutes_left <= 9  # of the 10 minutes, a few seconds used

"""bf16 mixed precision: the backbone in bf16, the STFT and complex maths in float32."""

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from tests.training.fixtures import compose_config, toy_loader


def build_model(*overrides):
    return instantiate(compose_config(list(overrides)).model)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2, 1600, generator=g)
    return x, torch.tensor([0.3, 0.8]), x.sum(1, keepdim=True)


def test_stft_score_model_under_cpu_autocast_matches_float32():
    for score_model in ("model/score_model=frame_blstm", "model/score_model=tiny"):
        torch.manual_seed(0)
        model = build_model(score_model).eval()
        x, t, mix = _inputs()
        with torch.no_grad():
            ref = model.score_model(x, t, mix)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model.score_model(x, t, mix)
        assert low.dtype == torch.float32 and torch.isfinite(low).all(), score_model
        rel = (low - ref).norm() / ref.norm()
        assert 0 < rel < 0.05, (score_model, float(rel))  # bf16 inside, but close


def test_training_runs_in_bf16_mixed_precision():
    torch.manual_seed(0)
    model = build_model("model/score_model=frame_blstm", "model.score_model.backbone.hidden=32")
    before = {k: v.clone() for k, v in model.score_model.state_dict().items()}
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = pl.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=3,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Record()])  # fmt: skip
    trainer.fit(model, train_dataloaders=toy_loader(6))
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    after = model.score_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())

"""Every experiment, model and trainer config composes and holds the documented values."""

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sdes import SAMPLER_DEFAULTS, sampler_options
from tests.training.fixtures import CONFIG_DIR, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONFIG_DIR / "trainer").glob("*.yaml"))


def test_groups_are_present():
    assert {"icassp-separation", "noise-reduction", "demo"} <= set(EXPERIMENTS)
    # the network is model/score_model=...; model=cpu is the shipped models' CPU recipe
    assert set(MODELS) == {"default", "diffuse", "cpu"}
    assert {"default", "allgpus", "cpu"} <= set(TRAINERS)


def _leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value and "_target_" not in value:
            yield from _leaves(value, path)
        elif key != "defaults":
            yield path, value


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_state_only_what_differs_from_the_defaults(experiment):
    """Every value an experiment file sets differs from what its config groups give."""
    raw = yaml.safe_load((CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text())
    groups = [f"{k.removeprefix('override').strip().lstrip('/')}={v}"
              for entry in raw.get("defaults", []) if isinstance(entry, dict)
              for k, v in entry.items()]
    base = compose_config(groups)
    restated = []
    for path, value in _leaves(raw):
        default = OmegaConf.select(base, path, default=None)
        if OmegaConf.is_config(default):
            default = OmegaConf.to_container(default)
        if path.startswith("model.sampler.") and default is None:  # null: SAMPLER_DEFAULTS
            default = SAMPLER_DEFAULTS.get(path.rsplit(".", 1)[1])
        if value == default:
            restated.append(path)
    assert not restated, f"{experiment} restates defaults: {restated}"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    OmegaConf.resolve(cfg.model)
    assert cfg.model._target_ == "models.diffsep.DiffSepModel"
    assert cfg.model.n_sources == cfg.n_sources == cfg.model.sde.n_sources


def test_separation_experiment_values():
    cfg = compose_config(["experiment=icassp-separation"])
    m = cfg.model
    assert cfg.name == "default" and cfg.fs == 8000 and cfg.n_sources == 2
    assert (m.init_hack, m.init_hack_p, m.t_eps, m.ema_decay) == (5, 0.1, 0.03, 0.999)
    assert m.optimizer.lr == 2e-4 and m.score_model.backbone.nf == 128
    assert m.score_model.spec_factor == 0.15
    assert (m.sde.sigma_min, m.sde.sigma_max, m.sde.d_lambda, m.sde.N) == (0.05, 0.5, 2.0, 30)
    sampler = sampler_options(m.sampler, m.sde.N)
    assert (sampler["N"], sampler["snr"], sampler["corrector"], sampler["corrector_steps"]) == (
        30, 0.5, "ald2", 1)
    assert m.valid_max_sep_batches * cfg.datamodule.val_batch_size >= 10
    assert cfg.checkpoint.save_top_k >= 5
    assert cfg.datamodule.batch_size == 6 and cfg.datamodule.train.max_len_s == 5.0
    OmegaConf.resolve(cfg.datamodule)
    assert cfg.datamodule.train.cut == cfg.datamodule.val.cut == cfg.datamodule.test.cut == "max"
    assert m.score_model.backbone.centered is False  # the reference's 2 x - 1 input
    t = cfg.trainer
    assert (t.gradient_clip_val, t.accumulate_grad_batches, t.check_val_every_n_epoch) == (5, 2, 5)
    # every GPU by default; trainer=cpu still composes for debugging
    assert t.devices == -1 and t.accelerator == "gpu"
    cpu = compose_config(["experiment=icassp-separation", "trainer=cpu"])
    assert cpu.trainer.accelerator == "cpu" and cpu.trainer.accumulate_grad_batches == 2


def test_enhancement_and_demo_values():
    cfg = compose_config(["experiment=noise-reduction"])
    assert cfg.name == "enhancement" and cfg.fs == 16000
    assert cfg.model.sde._target_.endswith("PriorMixSDE") and cfg.model.init_hack == 4
    assert cfg.model.source_order == "fixed" and cfg.model.score_model.backbone.nf == 128
    assert list(cfg.model.source_names) == ["speech", "noise"]
    demo = compose_config(["experiment=demo"])
    assert demo.trainer.accelerator == "cpu" and demo.trainer.max_time == "00:00:20:00"
    assert demo.trainer.check_val_every_n_epoch == 1
    assert demo.datamodule.train.root == "data/synth/wsj0_mix"
    assert demo.model.score_model.backbone._target_ == "networks.frame_rnn.FrameBLSTM"
    assert demo.model.score_model.backbone.scale_by_sigma is False  # it outputs sources
    m = demo.model
    assert (m.parameterization, m.loss_weighting, m.score_skip_var) == ("data", "unit", 0.5)
    sm = m.score_model
    assert (sm.output, sm.log_magnitude, sm.backbone.conv_channels) == ("mask+spectrum", True, 16)
    # mismatch and refinement steps only: no ordinary step is left
    assert (m.train_strategy, m.mismatch_p, m.refine_p) == ("prior_mismatch_pit", 0.5, 0.5)
    module = instantiate(m)  # the combination passes the model's own checks
    x = torch.randn(2, 2, 900)
    gen = torch.Generator().manual_seed(0)
    loss = module.compute_loss(x.sum(1, keepdim=True), x, generator=gen)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("model", MODELS)
def test_model_configs_instantiate(model):
    cfg = compose_config([f"model={model}"])
    module = instantiate(cfg.model)
    assert module.n_sources == 2 and module.sde.n_sources == 2
    if model in ("default", "large"):
        return  # same code as small, only wider: a CPU forward pass would be slow
    x = torch.randn(1, 2, 700)
    with torch.no_grad():
        score = module(x, torch.tensor([0.5]), x.sum(1, keepdim=True))
    assert score.shape == x.shape and torch.isfinite(score).all()


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_configs(trainer):
    cfg = compose_config([f"trainer={trainer}"])
    t = cfg.trainer
    assert t._target_ == "pytorch_lightning.Trainer" and t.gradient_clip_val == 5.0
    if trainer == "allgpus":
        assert t.devices == -1 and t.strategy.find_unused_parameters is False
        assert t.sync_batchnorm is False and t.check_val_every_n_epoch == 5
    if trainer == "cpu":
        trainer_obj = instantiate(t, logger=False, enable_checkpointing=False)
        assert trainer_obj.num_devices == 1

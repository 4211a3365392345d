"""Train DiffSep: ``python train.py [experiment=icassp-separation] [key=value ...]``.

Runs go to ``exp/<name>/<date>_<overrides>/`` (Hydra run dir): TensorBoard events,
``checkpoints/epoch-NNN_si_sdr-F.FFF.ckpt`` (best by val/si_sdr) and ``last.ckpt``.
``resume_from_checkpoint=<run>/checkpoints/last.ckpt`` continues that run in its own
folder (weights, optimizer, EMA, schedulers, best checkpoints and random generators).
Every checkpoint carries the resolved config (``diffsep_config``) so that
``models.loading.load_model`` rebuilds the model from the file alone.
"""

from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger

from training.callbacks import AtomicModelCheckpoint, LastCheckpoint, RNGState, StoreConfig

# Characters of override values that a path must not hold to be given back on the command
# line unquoted (resume_from_checkpoint=<run>/checkpoints/last.ckpt): list brackets and
# commas become plain separators, quotes and spaces go.
_NAME_CHARS = str.maketrans({"/": ".", "[": "", "]": "", "{": "", "}": "", "(": "", ")": "",
                             ",": "_", " ": "", "'": "", '"': ""})  # fmt: skip


def resumed_run_dir(ckpt, parent, name=None):
    """The run folder: that of `ckpt` (`<run>/checkpoints/<file>.ckpt`) when resuming, so
    that a resumed run goes on in its own folder, with its TensorBoard curves and its list
    of best checkpoints; else `parent/name`, with the "/" of group overrides in `name`
    (`model/score_model-tiny`) made "." so that the run is one folder, and list values
    (`speed=[0.85,1.15]` gives `speed-0.85_1.15`) written so that the path can be passed
    back to train.py without quotes."""
    if not ckpt:
        return parent if name is None else f"{parent}/{str(name).translate(_NAME_CHARS)}"
    path = Path(str(ckpt)).resolve()
    if path.parent.name != "checkpoints":
        raise ValueError(f"resume_from_checkpoint={ckpt}: expected a checkpoint of a train.py "
                         "run, <run>/checkpoints/<name>.ckpt")
    return str(path.parent.parent)


OmegaConf.register_new_resolver("run_dir", resumed_run_dir, replace=True)


def build_callbacks(cfg, ckpt_dir):
    best = AtomicModelCheckpoint(
        dirpath=ckpt_dir,
        filename="epoch-{epoch:03d}_si_sdr-{val/si_sdr:.3f}",
        auto_insert_metric_name=False,
        monitor="val/si_sdr",
        mode="max",
        save_top_k=cfg.checkpoint.save_top_k,
        save_last=False,  # LastCheckpoint owns last.ckpt
    )
    last = LastCheckpoint(ckpt_dir, cfg.checkpoint.every_n_train_steps)
    extra = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    return [StoreConfig(cfg), RNGState(), best, last, *extra]


@hydra.main(config_path="config", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # Fixed-size training crops: let cuDNN pick its fastest kernels once, and use TF32
    # tensor cores for float32 matmuls and convolutions (Ampere and later).
    torch.backends.cudnn.benchmark = bool(cfg.gpu.cudnn_benchmark)
    torch.backends.cuda.matmul.allow_tf32 = bool(cfg.gpu.tf32)
    torch.backends.cudnn.allow_tf32 = bool(cfg.gpu.tf32)
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.datamodule)
    model = instantiate(cfg.model)
    if cfg.init_from and not cfg.resume_from_checkpoint:
        init_weights(model, cfg.init_from)
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="")
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg, run_dir / "checkpoints"),
                          logger=logger)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.resume_from_checkpoint)
    if cfg.test:
        run_test(trainer, model, datamodule, run_dir)


def init_weights(model, spec):
    """Start from the weights of a checkpoint or shipped model (its EMA weights when it has
    them); the optimizer, schedulers and counters start afresh (fine-tuning)."""
    from models.loading import load_model
    from models.pretrained import resolve_model

    path = resolve_model(spec)
    source = load_model(path, "cpu", blend=False).score_model.state_dict()
    target = model.score_model.state_dict()
    differ = sorted(k for k in source.keys() | target.keys()
                    if k not in source or k not in target or source[k].shape != target[k].shape)
    if differ:
        raise ValueError(f"init_from={spec}: its network does not match this run's "
                         f"({len(differ)} tensors differ, e.g. {differ[:3]})")
    model.score_model.load_state_dict(source)
    model.ema = type(model.ema)(model.score_model, model.ema.decay, model.ema.warmup)
    print(f"initialised the network from {path}")


def run_test(trainer, model, datamodule, run_dir):
    """Evaluate the best checkpoint by val/si_sdr (else the final weights) on the test set.

    Music test sets (``domain = "music"``: full stereo tracks, BSS Eval v4) go through
    the evaluation pipeline of ``evaluate.py``, which writes its records and summary
    to ``<run_dir>/results/``; other test sets through ``trainer.test`` (logged metrics).
    """
    best = trainer.checkpoint_callback.best_model_path
    if getattr(datamodule.test_set, "domain", None) != "music":
        trainer.test(model, datamodule=datamodule, ckpt_path="best" if best else None)
        return
    if not trainer.is_global_zero:
        return
    from evaluation.results import format_summary
    from evaluation.runner import Settings
    from evaluation.session import EvalSession

    ckpt = best or str(run_dir / "checkpoints" / "last.ckpt")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # the run's own sampler, as trainer.test would use
    session = EvalSession(ckpt, Settings.model_sampler(), ["test"], device, run_dir / "results")
    session.run("test", session.todo("test"))
    print(format_summary("test", session.finish("test", {"device": device, "workers": 1})))

if __name__ == "__main__":
    main()

"""Rebuild a trained DiffSep model from its checkpoint alone."""

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

CONFIG_KEY = "diffsep_config"


class NotADiffSepCheckpoint(ValueError):
    """The file is not a checkpoint written by this project's train.py."""


def read_checkpoint(ckpt_path, device="cpu"):
    """Load the checkpoint dict, with a clear error for anything else."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Our checkpoints hold only tensors and plain containers: no pickled code.
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for foreign files
        raise NotADiffSepCheckpoint(
            f"{path} is not a DiffSep checkpoint (torch.load failed: {exc})") from exc
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise NotADiffSepCheckpoint(
            f"{path} is not a DiffSep checkpoint: it has no '{CONFIG_KEY}' entry "
            "(checkpoints written by train.py store the run's config there)")
    return ckpt


def load_model(ckpt_path, device="cpu"):
    """DiffSepModel with the EMA weights, in eval mode, on ``device``.

    Sets ``model.config`` (the run's resolved config, a DictConfig) and
    ``model.exp_name`` (its ``name``).
    """
    ckpt = read_checkpoint(ckpt_path, device="cpu")
    config = OmegaConf.create(ckpt[CONFIG_KEY])
    model = instantiate(config.model)
    model.load_state_dict(ckpt["state_dict"])
    if "ema" in ckpt:
        model.ema.load_state_dict(ckpt["ema"])
        model.ema.copy_to(model.score_model)
    model.config = config
    model.exp_name = config.get("name")
    return model.to(device).eval()

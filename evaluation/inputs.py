"""What an evaluation reads: the separator (checkpoint or baseline) and datasets.

Everything here fails early with a clear message, before any utterance is
processed: a missing or foreign checkpoint, an unknown split, a missing folder.
"""

from pathlib import Path

from omegaconf import OmegaConf

from evaluation.runner import CONFIG_SPLITS, LIBRI_SPLITS, NO_PROC, MixtureBaseline
from models.loading import (
    CONFIG_KEY,
    DATA_TARGETS,
    UnsafeCheckpoint,
    check_targets,
    config_n_sources,
    read_checkpoint,
)


class EvaluationInputError(RuntimeError):
    """Bad command-line input (checkpoint, data, split); the message says what."""


def _check_ckpt_file(path):
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"checkpoint {path} does not exist")
    return path


def config_from_checkpoint(path):
    """The training config stored in a DiffSep checkpoint, without building the model."""
    try:
        ckpt = read_checkpoint(_check_ckpt_file(path))
    except ValueError as e:  # NotADiffSepCheckpoint
        raise EvaluationInputError(str(e)) from e
    return OmegaConf.create(ckpt[CONFIG_KEY])


def config_from_hydra(datamodule, overrides=()):
    """Compose `config/config.yaml` with `datamodule=NAME` and Hydra overrides."""
    from hydra import compose, initialize_config_dir

    config_dir = Path(__file__).resolve().parents[1] / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose("config", overrides=[f"datamodule={datamodule}", *overrides])


def load_separator(ckpt, device, config_from=None, datamodule=None, overrides=(), blend=True,
                   one_shot=False):
    """A DiffSep model from `ckpt` (with its one-shot partner when it is a shipped model
    that has one and `blend` is true), with `one_shot` that partner alone (a
    :class:`models.blend.OneShot` that carries `ckpt`'s config: its datasets), or the
    mixture baseline for `__no_proc__`.

    The baseline takes its data config from another checkpoint (`config_from`)
    or from the Hydra config group `datamodule`; its fs and sources are set by
    `attach_dataset` once a dataset is built.
    """
    if ckpt == NO_PROC:
        if config_from is not None:
            cfg, exp = config_from_checkpoint(config_from), f"mixture-{Path(config_from).stem}"
        elif datamodule is not None:
            cfg, exp = config_from_hydra(datamodule, overrides), f"mixture-{datamodule}"
        else:
            raise EvaluationInputError(
                f"{NO_PROC} needs the data to score: give --config-from CKPT or --datamodule NAME")
        # fs and K from the config when it has them (LibriMix splits need them); else
        # the baseline adopts the first dataset's format in `attach_dataset`.
        fs, k = cfg.get("fs"), config_n_sources(cfg)
        names = [f"s{i + 1}" for i in range(k)] if k else []
        return MixtureBaseline(fs, k, names, cfg, exp)
    path = _check_ckpt_file(ckpt)
    if one_shot:
        from models.pretrained import one_shot_for

        try:
            return one_shot_for(path, config=config_from_checkpoint(path))
        except (ValueError, FileNotFoundError) as e:
            raise EvaluationInputError(str(e)) from e
    from models.loading import NotADiffSepCheckpoint, load_model

    try:
        return load_model(str(path), device, blend=blend)
    except NotADiffSepCheckpoint as e:
        raise EvaluationInputError(str(e)) from e


def build_dataset(separator, split, libri_root="data/LibriMix"):
    """The dataset of `split`: val/test from the training config, or a LibriMix test set."""
    if split in CONFIG_SPLITS:
        from hydra.utils import instantiate

        node = separator.config.get("datamodule", {}).get(split) if separator.config else None
        if node is None:
            raise EvaluationInputError(f"the config has no datamodule.{split} dataset")
        try:
            check_targets(node, DATA_TARGETS, "the checkpoint's config", f"datamodule.{split}")
        except UnsafeCheckpoint as e:
            raise EvaluationInputError(str(e)) from e
        try:
            dataset = instantiate(node)
        except Exception as e:  # Hydra wraps the loader's error; keep its message
            cause = e.__cause__ or e
            raise EvaluationInputError(f"cannot load the {split} dataset: {cause}") from e
    elif split in LIBRI_SPLITS:
        from datasets.librimix import librimix_eval_dataset

        if separator.fs is None:
            raise EvaluationInputError("LibriMix splits need a model checkpoint (fs, K)")
        try:
            dataset = librimix_eval_dataset(split, libri_root, separator.n_sources, separator.fs)
        except (ValueError, OSError) as e:
            raise EvaluationInputError(f"cannot load {split}: {e}") from e
    else:
        raise EvaluationInputError(
            f"unknown split {split!r}; use one of {CONFIG_SPLITS + LIBRI_SPLITS}")
    attach_dataset(separator, dataset, split)
    return dataset


def attach_dataset(separator, dataset, split):
    """Check that the dataset fits the separator (the baseline adopts its format)."""
    if isinstance(separator, MixtureBaseline):
        if separator.fs is None:
            separator.fs, separator.n_sources = int(dataset.fs), int(dataset.n_sources)
        separator.source_names = list(dataset.source_names)
    # Music is scored at the data's rate (MUSDB: 44.1 kHz) and resampled for the model.
    music = getattr(dataset, "domain", None) == "music"
    if int(dataset.fs) != int(separator.fs) and not music:
        raise EvaluationInputError(
            f"{split}: data at {dataset.fs} Hz, the model works at {separator.fs} Hz")
    if int(dataset.n_sources) != int(separator.n_sources):
        raise EvaluationInputError(
            f"{split}: data has {dataset.n_sources} sources, the model {separator.n_sources}")
    if len(dataset) == 0:
        raise EvaluationInputError(f"{split}: the dataset is empty")

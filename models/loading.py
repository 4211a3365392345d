"""The checkpoint format, in one place: what train.py and the export write, what every
loader reads, and the rebuilding of a trained DiffSep model from its checkpoint alone.

A checkpoint is a dict that loads with ``torch.load(..., weights_only=True)``:

- ``CONFIG_KEY`` (``diffsep_config``): the run's resolved config (plain containers), put
  there by ``training.callbacks.StoreConfig``; the model is rebuilt from its ``model``
  node, and only the classes of ``MODEL_TARGETS`` may be named there;
- ``STATE_KEY`` (``state_dict``): the LightningModule's weights (the training weights in
  a training checkpoint, the EMA weights in a shipped file);
- ``EMA_KEY`` (``ema``, training checkpoints only): the EMA of the score network
  (``models.ema.EMA``), which loaders copy in for inference;
- ``META_KEY`` (``pretrained``, shipped files only): how the shipped weights were made;
- Lightning's own entries (``global_step``, ``epoch``, optimizer and loop states) in
  training checkpoints, used by ``resume_from_checkpoint``.
"""

import zipfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

CONFIG_KEY = "diffsep_config"
STATE_KEY = "state_dict"
EMA_KEY = "ema"
META_KEY = "pretrained"

# The only callables a checkpoint's config may name: the project's own model, network and
# SDE classes, and the optimizers and schedulers its configs use. Hydra would otherwise call
# any importable function a crafted checkpoint names (e.g. one that writes files).
MODEL_TARGETS = frozenset({
    "models.diffsep.DiffSepModel",
    "networks.score_model.STFTScoreModel", "networks.score_model.WaveformScoreModel",
    "networks.ncsnpp.NCSNpp", "networks.frame_rnn.FrameBLSTM", "networks.cdiffuse.CDiffuse",
    # the same classes under their paths before networks/ (checkpoints of that time)
    "models.score_model.STFTScoreModel", "models.score_model.WaveformScoreModel",
    "models.ncsnpp.NCSNpp", "models.frame_rnn.FrameBLSTM", "models.cdiffuse.CDiffuse",
    "sdes.MixSDE", "sdes.PriorMixSDE", "sdes.OUVESDE",
    "sdes.mix.MixSDE", "sdes.mix.PriorMixSDE", "sdes.ouve.OUVESDE",
    "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD",
    "torch.optim.lr_scheduler.StepLR", "torch.optim.lr_scheduler.MultiStepLR",
    "torch.optim.lr_scheduler.ExponentialLR", "torch.optim.lr_scheduler.CosineAnnealingLR",
})  # fmt: skip
# ... and the datasets that evaluation rebuilds from a checkpoint's datamodule config.
DATA_TARGETS = frozenset({
    "datasets.wsj0_mix.WSJ0Mix", "datasets.librimix.LibriMix",
    "datasets.vctk_demand.VCTKDemand", "datasets.musdb.MUSDB18HQ",
    "datasets.dynamic_mix.DynamicMix",
})  # fmt: skip


def config_n_sources(config):
    """K from a run config (dict or DictConfig), None when it has none: `n_sources`, or
    `n_speakers` in the configs of checkpoints written before the rename."""
    return config.get("n_sources", config.get("n_speakers"))


class NotADiffSepCheckpoint(ValueError):
    """The file is not a checkpoint written by this project's train.py."""


class UnsafeCheckpoint(NotADiffSepCheckpoint):
    """The checkpoint's config names a callable outside the allowlist."""


def check_targets(node, allowed, source, prefix="") -> None:
    """Refuse every `_target_` in the config `node` (at `prefix`) that is not in `allowed`."""
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=False)
    stack = [(prefix, node)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            target = value.get("_target_")
            if target is not None and target not in allowed:
                raise UnsafeCheckpoint(
                    f"{source}: refusing to build {path or 'the config'}: its _target_ "
                    f"{target!r} is not one of this project's classes. Only checkpoints "
                    "written by train.py (or a trusted source) can be loaded.")
            stack += [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(value)]


def _looks_truncated(path: Path) -> bool:
    """A torch zip archive (starts with a zip header) whose end is missing."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def read_checkpoint(ckpt_path, device="cpu"):
    """Load the checkpoint dict, with a clear error for anything else."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Our checkpoints hold only tensors and plain containers: no pickled code.
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for foreign files
        if _looks_truncated(path):
            raise NotADiffSepCheckpoint(
                f"{path} is truncated or corrupt: it starts like a checkpoint but its zip "
                "directory is missing (an interrupted copy or save); use another checkpoint "
                f"(torch.load: {exc})") from exc
        raise NotADiffSepCheckpoint(
            f"{path} is not a DiffSep checkpoint (torch.load failed: {exc})") from exc
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or STATE_KEY not in ckpt:
        raise NotADiffSepCheckpoint(
            f"{path} is not a DiffSep checkpoint: it has no '{CONFIG_KEY}' entry "
            "(checkpoints written by train.py store the run's config there)")
    return ckpt


def load_model(ckpt_path, device="cpu", blend=True):
    """DiffSepModel with the EMA weights, in eval mode, on ``device``.

    Sets ``model.config`` (the run's resolved config, a DictConfig) and
    ``model.exp_name`` (its ``name``); for a shipped model that names a one-shot partner
    (``models.pretrained.PARTNERS``) and ``blend`` true, ``model.partner``
    (``models/blend.py``; None otherwise).
    """
    from models.pretrained import partner_for  # imported late: it imports this module

    model = model_from_checkpoint(read_checkpoint(ckpt_path, device="cpu"), ckpt_path, device)
    model.partner = partner_for(ckpt_path) if blend else None
    return model


def model_from_checkpoint(ckpt, source, device="cpu"):
    """:func:`load_model` for a checkpoint dict already read (``source`` names it in errors)."""
    config = OmegaConf.create(ckpt[CONFIG_KEY])
    check_targets(config.get("model"), MODEL_TARGETS, source, "model")
    model = instantiate(config.model)
    model.load_state_dict(ckpt[STATE_KEY])
    if EMA_KEY in ckpt:
        model.ema.load_state_dict(ckpt[EMA_KEY])
        model.ema.copy_to(model.score_model)
    model.config = config
    model.exp_name = config.get("name")
    return model.to(device).eval()


# Under ``half``, tensors smaller than this stay float32: they hold few bytes, and some
# round badly. The Fourier frequencies of FrameBLSTM's time embedding (|W| up to 40)
# multiply log t: rounded to float16 they shift its phases by up to 0.3 rad at t = 0.03,
# where the shipped diffusion model's score then moved by 1 % (0.02 % with the small
# tensors kept), and its SI-SDRi on 6 cv mixtures by up to 0.013 dB (0.002 dB kept).
HALF_MIN_NUMEL = 4096


def write_inference_file(config, model, meta, out_path, half=False) -> Path:
    """Write the inference-only checkpoint of ``model`` (its current weights, which
    loaders use as they are: no EMA entry) atomically, and check that it loads with
    ``weights_only=True`` before it replaces ``out_path``. ``half`` stores the
    floating-point tensors of at least ``HALF_MIN_NUMEL`` elements as float16 (about half
    the size; loading copies them into the model's float32 parameters); smaller ones
    (biases, norms, the time embedding's Fourier frequencies) stay float32."""
    def stored(v):
        v = v.detach().to("cpu", copy=True)  # a model trained on a GPU loads anywhere
        return v.half() if half and v.is_floating_point() and v.numel() >= HALF_MIN_NUMEL else v

    payload = {CONFIG_KEY: config,
               STATE_KEY: {k: stored(v) for k, v in model.state_dict().items()},
               META_KEY: dict(meta)}  # fmt: skip
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    torch.save(payload, tmp)
    try:
        torch.load(tmp, map_location="cpu", weights_only=True)  # must load as it will be used
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out_path)
    return out_path

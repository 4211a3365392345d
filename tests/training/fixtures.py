"""Tiny data, configs and callbacks shared by the training tests."""

import hashlib
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pytorch_lightning.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datasets.collate import collate_pad

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"

# A waveform-domain CDiffuse with a handful of channels: the fastest real score
# network of the project, for tests that exercise the training logic, not the net.
FAST_MODEL = [
    "model=diffuse",
    "model.score_model.backbone.residual_channels=8",
    "model.score_model.backbone.n_layers=2",
    "model.score_model.backbone.dilation_cycle=2",
    "model.score_model.backbone.embedding_dim=16",
    "model.sampler.N=3",
    "model.valid_max_sep_batches=1",
]


class OracleScore(nn.Module):
    """The exact score of p(x_t | x0) for known (normalised) sources x0."""

    def __init__(self, sde, x0_n):
        super().__init__()
        self.sde, self.x0_n = sde, x0_n

    def forward(self, x, t, mix):
        mean, std = self.sde.marginal_prob(self.x0_n, t, mix)
        return -self.sde.mult_std_inv(std, self.sde.mult_std_inv(std, x - mean))


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def build_model(*overrides):
    """A DiffSepModel from the project configs with the fast network."""
    return instantiate(compose_config([*FAST_MODEL, *overrides]).model)


def toy_sources(rng, n_sources, length, fs=8000):
    """K band-separated harmonic sources with random pitch and envelope."""
    t = np.arange(length) / fs
    out = []
    for k in range(n_sources):
        f0 = rng.uniform(120, 250) * (1 + 1.5 * k)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6))
        sig = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in (1, 2, 3))
        out.append(rng.uniform(0.2, 1.0) * env * sig + 0.01 * rng.standard_normal(length))
    return np.stack(out).astype(np.float32)


class ToyMixtures(Dataset):
    """In-memory (mix (1, L), tgt (K, L)) items with the dataset attributes."""

    def __init__(self, n_items=8, n_sources=2, length=2000, seed=0, fs=8000):
        rng = np.random.default_rng(seed)
        self.items = [torch.from_numpy(toy_sources(rng, n_sources, length, fs))
                      for _ in range(n_items)]
        self.fs, self.n_sources = fs, n_sources
        self.source_names = [f"s{k + 1}" for k in range(n_sources)]
        self.names = [f"toy{i:03d}" for i in range(n_items)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        tgt = self.items[idx]
        return tgt.sum(0, keepdim=True), tgt


def toy_loader(n_items=8, batch_size=2, **kwargs):
    return DataLoader(ToyMixtures(n_items, **kwargs), batch_size=batch_size,
                      collate_fn=collate_pad)


def make_wsj0_layout(root, n_files=(6, 2, 2), length=4000, fs=8000, seed=0):
    """Write a tiny WSJ0-2mix tree (min cut, tr/cv/tt) under ``root``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("tr", "cv", "tt"), n_files):
        base = Path(root) / "2speakers" / f"wav{fs // 1000}k" / "min" / split
        for name in ("mix", "s1", "s2"):
            (base / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            src = 0.3 * toy_sources(rng, 2, length + int(rng.integers(0, 400)), fs)
            fname = f"utt{i:02d}.wav"
            sf.write(base / "s1" / fname, src[0], fs, subtype="FLOAT")
            sf.write(base / "s2" / fname, src[1], fs, subtype="FLOAT")
            sf.write(base / "mix" / fname, src.sum(0), fs, subtype="FLOAT")
    return Path(root)


def state_hash(module):
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class WeightsHash(Callback):
    """Each rank writes a hash of its weights at the end of training (DDP test)."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}_pid{os.getpid()}.txt"
        path.write_text(f"{state_hash(pl_module)} {trainer.global_step}\n")


class StepHashes(Callback):
    """Appends "<step> <hash of the weights>" to `out_dir/steps.txt` after every step."""

    def __init__(self, out_dir):
        self.path = Path(out_dir) / "steps.txt"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(f"{trainer.global_step} {state_hash(pl_module.score_model)}\n")


class RankDraw(Callback):
    """Each rank writes its first random draw of training (per-rank seeding test)."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)

    def on_train_start(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        draw = float(torch.rand(()))
        (self.out_dir / f"rank{trainer.global_rank}.txt").write_text(f"{draw!r}\n")

"""Lightning DataModule wrapping ready-built train/val/test datasets."""

from __future__ import annotations

import os
import random

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from datasets.collate import collate_pad


def seed_worker(worker_id: int) -> None:
    """Seed numpy and `random` in a DataLoader worker from torch's worker seed.

    torch already seeds each worker with base_seed + worker_id, where base_seed
    is drawn from the main process RNG every epoch; the loaders draw crops from
    torch's RNG, and this keeps any numpy/random use in the same scheme.
    """
    # DDP ranks share the loader's seeds (one data order, split between ranks): the
    # rank keeps their workers' random draws (crops, remixes) apart.
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
    if rank:
        torch.manual_seed((torch.initial_seed() + 7919 * rank) % 2**63)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class EpochRandomSampler(Sampler):
    """A random order of the dataset that depends only on (seed, epoch).

    `set_epoch` (which Lightning calls before every epoch) also reseeds `generator`, the
    loader's, from which it draws its workers' base seed. Data order and worker seeds then
    do not depend on how often or when the loader was iterated, so a run resumed from a
    checkpoint sees the same batches as the run it continues.
    """

    def __init__(self, data_source, seed: int, generator: torch.Generator):
        self.n = len(data_source)
        self.seed = int(seed)
        self.generator = generator
        self.set_epoch(0)

    def _epoch_seed(self) -> int:
        return (self.seed * 1_000_003 + self.epoch) % 2**63

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.generator.manual_seed(self._epoch_seed())

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self._epoch_seed())
        return iter(torch.randperm(self.n, generator=g).tolist())


class DataModule(pl.LightningDataModule):
    """DataLoaders with `collate_pad` for datasets built by Hydra (`_target_` nodes).

    Training batches are shuffled and the last incomplete batch dropped (by
    default); validation and test keep the file order and every item.
    """

    def __init__(
        self,
        train: Dataset | None,
        val: Dataset | None,
        test: Dataset | None,
        batch_size: int,
        val_batch_size: int = 1,
        test_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int | None = None,
    ):
        super().__init__()
        self.train_set, self.val_set, self.test_set = train, val, test
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.test_batch_size = int(test_batch_size)
        self.num_workers = int(num_workers)
        # pinning only helps (and torch only allows it quietly) with a GPU
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        # train.py seeds torch before building the data: the order follows the run's seed
        self.seed = torch.initial_seed() if seed is None else int(seed)

    def _first_set(self) -> Dataset:
        for ds in (self.train_set, self.val_set, self.test_set):
            if ds is not None:
                return ds
        raise ValueError("the DataModule has no dataset")

    @property
    def fs(self) -> int:
        return self._first_set().fs

    @property
    def n_sources(self) -> int:
        return self._first_set().n_sources

    @property
    def source_names(self) -> list[str]:
        return list(self._first_set().source_names)

    def _loader(self, ds: Dataset | None, which: str, batch_size: int, train: bool) -> DataLoader:
        if ds is None:
            raise ValueError(f"no {which} dataset configured in the DataModule")
        sampler, generator = None, None
        if self.shuffle and train:
            generator = torch.Generator()
            sampler = EpochRandomSampler(ds, self.seed, generator)
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            generator=generator,
            drop_last=self.drop_last and train,
            num_workers=self.num_workers,
            collate_fn=collate_pad,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            worker_init_fn=seed_worker,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train", self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val", self.val_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", self.test_batch_size, train=False)

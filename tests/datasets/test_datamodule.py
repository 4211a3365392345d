"""DataModule: batch shapes, and worker seeding of random crops."""

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.datamodule import DataModule
from datasets.wsj0_mix import WSJ0Mix


class RandomItems(Dataset):
    """Items drawn from torch's and numpy's global RNGs, as loaders with crops do."""

    fs, n_sources, source_names = 8000, 2, ["s1", "s2"]

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        tgt = torch.full((2, 3), float(torch.rand(())))
        tgt[1] = float(np.random.rand())
        return tgt.sum(0, keepdim=True), tgt


def _epoch(loader):
    return torch.cat([tgt[:, :, 0] for _, tgt, _ in loader])


def test_batches_have_the_right_shapes(wsj0_root):
    dm = DataModule(
        train=WSJ0Mix(wsj0_root, split="tr", max_len_s=0.1),
        val=WSJ0Mix(wsj0_root, split="cv"),
        test=WSJ0Mix(wsj0_root, split="tt"),
        batch_size=3,
        val_batch_size=2,
    )
    assert (dm.fs, dm.n_sources, dm.source_names) == (8000, 2, ["s1", "s2"])
    train = list(dm.train_dataloader())
    assert len(train) == 1  # 4 items, batch 3, last one dropped
    mix, tgt, lengths = train[0]
    assert mix.shape == (3, 1, 800) and tgt.shape == (3, 2, 800) and lengths.tolist() == [800] * 3
    mix, tgt, lengths = next(iter(dm.val_dataloader()))
    assert mix.shape == (2, 1, 2500) and tgt.shape == (2, 2, 2500)
    assert lengths.tolist() == [2000, 2500]  # file order kept, zero-padded
    assert len(list(dm.test_dataloader())) == 2


def test_workers_differ_epochs_differ_and_seed_reproduces():
    dm = DataModule(RandomItems(), None, None, batch_size=2, num_workers=2, shuffle=False)
    torch.manual_seed(0)
    loader = dm.train_dataloader()
    first, second = _epoch(loader), _epoch(loader)
    torch.manual_seed(0)
    again = _epoch(dm.train_dataloader())
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, second)
    # batches 0, 2 come from worker 0 and 1, 3 from worker 1: the draws must differ
    for col in range(2):  # torch draws and numpy draws
        assert len(set(first[:, col].tolist())) == len(first)

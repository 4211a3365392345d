"""collate_pad: zero padding to the longest item and lengths."""

import pytest
import torch

from datasets.collate import collate_pad


def test_pads_with_zeros_and_reports_lengths():
    lengths = [5, 9, 3]
    batch = []
    for n in lengths:
        tgt = torch.randn(2, n)
        batch.append((tgt.sum(0, keepdim=True), tgt))
    mix, tgt, lens = collate_pad(batch)
    assert mix.shape == (3, 1, 9) and tgt.shape == (3, 2, 9)
    assert lens.dtype == torch.int64 and lens.tolist() == lengths
    for i, n in enumerate(lengths):
        torch.testing.assert_close(mix[i, :, :n], batch[i][0], rtol=0, atol=0)
        torch.testing.assert_close(tgt[i, :, :n], batch[i][1], rtol=0, atol=0)
        assert torch.all(mix[i, :, n:] == 0) and torch.all(tgt[i, :, n:] == 0)


def test_rejects_inconsistent_items():
    good = (torch.zeros(1, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="item 1"):
        collate_pad([good, (torch.zeros(1, 4), torch.zeros(3, 4))])
    with pytest.raises(ValueError, match="item 0"):
        collate_pad([(torch.zeros(1, 4), torch.zeros(2, 5))])
    with pytest.raises(ValueError, match="item 0"):
        collate_pad([(torch.zeros(2, 4), torch.zeros(2, 4))])

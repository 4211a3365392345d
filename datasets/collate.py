"""Batch collation of variable-length (mix, tgt) items by zero padding."""

from __future__ import annotations

import torch


def collate_pad(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack items (mix (1, L_i), tgt (K, L_i)) into zero-padded batches.

    Returns mix (B, 1, Lmax), tgt (B, K, Lmax) and the lengths L_i (B,) int64.
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    n_sources = batch[0][1].shape[0]
    lengths = []
    for i, (mix, tgt) in enumerate(batch):
        if mix.ndim != 2 or mix.shape[0] != 1 or tgt.ndim != 2:
            raise ValueError(
                f"item {i}: expected mix (1, L) and tgt (K, L), got {tuple(mix.shape)} "
                f"and {tuple(tgt.shape)}"
            )
        if tgt.shape[0] != n_sources or tgt.shape[1] != mix.shape[1]:
            raise ValueError(
                f"item {i}: tgt {tuple(tgt.shape)} does not match mix {tuple(mix.shape)} "
                f"with K={n_sources}"
            )
        lengths.append(mix.shape[1])
    l_max = max(lengths)
    mixes = batch[0][0].new_zeros((len(batch), 1, l_max))
    tgts = batch[0][1].new_zeros((len(batch), n_sources, l_max))
    for i, (mix, tgt) in enumerate(batch):
        mixes[i, :, : lengths[i]] = mix
        tgts[i, :, : lengths[i]] = tgt
    return mixes, tgts, torch.tensor(lengths, dtype=torch.int64)

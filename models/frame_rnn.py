"""Alias of `networks.frame_rnn` for checkpoints whose config names
`models.frame_rnn` (written before the networks moved to `networks/`)."""

from networks.frame_rnn import FrameBLSTM

__all__ = ["FrameBLSTM"]

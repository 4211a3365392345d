"""Alias of `networks.score_model` for checkpoints whose config names
`models.score_model` (written before the networks moved to `networks/`)."""

from networks.score_model import STFTScoreModel, WaveformScoreModel

__all__ = ["STFTScoreModel", "WaveformScoreModel"]

"""Alias of `networks.ncsnpp` for checkpoints whose config names
`models.ncsnpp` (written before the networks moved to `networks/`)."""

from networks.ncsnpp import NCSNpp

__all__ = ["NCSNpp"]

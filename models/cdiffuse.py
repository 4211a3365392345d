"""Alias of `networks.cdiffuse` for checkpoints whose config names
`models.cdiffuse` (written before the networks moved to `networks/`)."""

from networks.cdiffuse import CDiffuse

__all__ = ["CDiffuse"]

"""Dataset loaders, collation and the Lightning DataModule.

The loaders are re-exported lazily (PEP 562 `__getattr__`): importing the
package, e.g. to run the `datasets.synth` generator, does not pull in torch or
Lightning until a loader is actually used.
"""

from importlib import import_module

_EXPORTS = {
    "DatasetError": "datasets.audio",
    "collate_pad": "datasets.collate",
    "LibriMix": "datasets.librimix",
    "librimix_eval_dataset": "datasets.librimix",
    "MUSDB18HQ": "datasets.musdb",
    "VCTKDemand": "datasets.vctk_demand",
    "WSJ0Mix": "datasets.wsj0_mix",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'datasets' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)

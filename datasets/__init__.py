"""Dataset loaders, collation and the Lightning DataModule.

The loaders are re-exported here; `datasets.datamodule.DataModule` is not, so
that importing a loader (or the `datasets.synth` generator) does not pull in
Lightning.
"""

from datasets.audio import DatasetError
from datasets.collate import collate_pad
from datasets.librimix import LibriMix, librimix_eval_dataset
from datasets.musdb import MUSDB18HQ
from datasets.vctk_demand import VCTKDemand
from datasets.wsj0_mix import WSJ0Mix

__all__ = [
    "DatasetError",
    "LibriMix",
    "MUSDB18HQ",
    "VCTKDemand",
    "WSJ0Mix",
    "collate_pad",
    "librimix_eval_dataset",
]

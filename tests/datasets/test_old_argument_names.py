"""The loaders' number of sources was called `n_spkr` (configs stored in checkpoints
written before the rename still say so): the old keyword builds the same dataset."""

import numpy as np
import pytest
from hydra.utils import instantiate

from datasets.librimix import LibriMix, librimix_eval_dataset
from datasets.wsj0_mix import WSJ0Mix


def same_items(a, b):
    assert (a.fs, a.n_sources, a.source_names, a.names) == (b.fs, b.n_sources, b.source_names,
                                                            b.names)  # fmt: skip
    for i in range(len(a)):
        for x, y in zip(a[i], b[i]):
            np.testing.assert_array_equal(x.numpy(), y.numpy())


@pytest.mark.parametrize("k, cut", [(2, "min"), (3, "max")])
def test_wsj0mix_old_keyword_equals_new(wsj0_root, k, cut):
    new = WSJ0Mix(wsj0_root, n_sources=k, fs=8000, cut=cut, split="cv")
    with pytest.deprecated_call(match="n_spkr"):
        old = WSJ0Mix(wsj0_root, n_spkr=k, fs=8000, cut=cut, split="cv")
    assert new.n_sources == k
    same_items(old, new)


def test_librimix_old_keyword_equals_new(libri_root):
    with pytest.deprecated_call():
        old = LibriMix(libri_root, n_spkr=2, split="dev")
    same_items(old, LibriMix(libri_root, n_sources=2, split="dev"))
    with pytest.deprecated_call():
        old = librimix_eval_dataset("libri-clean", libri_root, n_spkr=2)
    same_items(old, librimix_eval_dataset("libri-clean", libri_root, n_sources=2))


def test_old_and_new_keyword_together_is_an_error(wsj0_root, libri_root):
    for build in (lambda **kw: WSJ0Mix(wsj0_root, **kw), lambda **kw: LibriMix(libri_root, **kw)):
        with pytest.raises(TypeError, match="n_sources.*deprecated alias n_spkr"):
            build(n_sources=2, n_spkr=2)
    with pytest.raises(TypeError, match="both"):
        WSJ0Mix(wsj0_root, 2, n_spkr=2)  # positional n_sources
    assert WSJ0Mix(wsj0_root, split="tt").n_sources == 2  # neither: the default K = 2


def test_a_checkpoint_era_datamodule_node_still_instantiates(wsj0_root):
    node = {"_target_": "datasets.wsj0_mix.WSJ0Mix", "root": str(wsj0_root), "n_spkr": 3,
            "fs": 8000, "cut": "max", "split": "tt", "max_len_s": None}  # fmt: skip
    with pytest.deprecated_call():
        old = instantiate(node)
    same_items(old, WSJ0Mix(wsj0_root, n_sources=3, fs=8000, cut="max", split="tt"))

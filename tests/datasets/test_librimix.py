"""LibriMix on a tiny tree in the published layout (clean and noisy mixtures)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from datasets.audio import DatasetError
from datasets.librimix import LIBRIMIX_LAYOUT, LibriMix, librimix_eval_dataset
from tests.datasets.corpora import (
    LIBRI_LENGTHS,
    make_librimix,
    offset_of,
    ramp,
    ramp_start,
    write_wav,
)


def _file(root, split, folder, name):
    x, _ = sf.read(str(root / "Libri2Mix/wav8k/min" / split / folder / f"{name}.wav"),
                   dtype="float32")
    return x


def test_clean_mixture_is_sum_of_speakers(libri_root):
    ds = LibriMix(libri_root, split="dev", mixture="clean", check_sum=True)
    assert ds.source_names == ["s1", "s2"] and ds.names == ["utt00", "utt01"]
    mix, tgt = ds[1]
    assert mix.shape == (1, LIBRI_LENGTHS["dev"][1]) and tgt.shape == (2, mix.shape[1])
    torch.testing.assert_close(mix[0], tgt.sum(0), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(tgt[1].numpy(), _file(libri_root, "dev", "s2", "utt01"))


def test_noisy_mixture_keeps_speakers_as_targets(libri_root):
    ds = LibriMix(libri_root, split="dev", mixture="both")
    mix, tgt = ds[0]
    assert tgt.shape[0] == 2
    noise = _file(libri_root, "dev", "noise", "utt00")
    np.testing.assert_array_equal(mix[0].numpy(), _file(libri_root, "dev", "mix_both", "utt00"))
    torch.testing.assert_close(mix[0] - tgt.sum(0), torch.from_numpy(noise), atol=1e-6, rtol=0)
    assert float((mix[0] - tgt.sum(0)).abs().max()) > 0.01  # not the sum of the targets
    with pytest.raises(ValueError, match="noise"):
        LibriMix(libri_root, split="dev", mixture="both", check_sum=True)


def test_train_crops_are_random_slices(libri_root):
    ds = LibriMix(libri_root, split="train-100", max_len_s=0.1)  # 800 of 3000 samples
    torch.manual_seed(1)
    starts = set()
    for _ in range(10):
        mix, tgt = ds[0]
        start = ramp_start(tgt[0].numpy(), 0, offset_of(0))
        np.testing.assert_array_equal(tgt[1].numpy(), ramp(3000, 1, offset_of(0))[start:][:800])
        torch.testing.assert_close(mix[0], tgt.sum(0), atol=1e-6, rtol=0)
        starts.add(start)
    assert len(starts) > 3


def test_eval_dataset_mapping(libri_root):
    clean = librimix_eval_dataset("libri-clean", libri_root, n_sources=2, fs=8000)
    noisy = librimix_eval_dataset("libri-noisy", libri_root, n_sources=2, fs=8000)
    assert clean.split == noisy.split == "test"
    assert (clean.mixture, noisy.mixture) == ("clean", "both")
    assert clean.names == noisy.names == ["utt00", "utt01"]
    np.testing.assert_array_equal(clean[0][0][0].numpy(),
                                  _file(libri_root, "test", "mix_clean", "utt00"))
    np.testing.assert_array_equal(noisy[0][0][0].numpy(),
                                  _file(libri_root, "test", "mix_both", "utt00"))
    with pytest.raises(ValueError, match="libri-clean"):
        librimix_eval_dataset("wsj0", libri_root)


def test_errors(libri_root, tmp_path):
    with pytest.raises(DatasetError) as err:
        LibriMix(tmp_path, split="dev")
    assert "Libri2Mix/wav8k/min/dev" in str(err.value) and LIBRIMIX_LAYOUT in str(err.value)
    with pytest.raises(ValueError, match="mixture"):
        LibriMix(libri_root, split="dev", mixture="single")
    with pytest.raises(ValueError, match="split"):
        LibriMix(libri_root, split="tr")


def test_mixture_not_sum(tmp_path):
    root = make_librimix(tmp_path / "LibriMix")
    base = root / "Libri2Mix/wav8k/min/dev"
    write_wav(base / "mix_clean" / "utt00.wav", np.zeros(LIBRI_LENGTHS["dev"][0]), 8000)
    with pytest.raises(DatasetError, match=r"mix_clean/utt00\.wav is not the sum"):
        LibriMix(root, split="dev", check_sum=True)[0]

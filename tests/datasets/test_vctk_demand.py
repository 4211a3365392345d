"""VCTKDemand on a tiny VoiceBank-DEMAND tree: splits, targets, crops, resampling."""

import numpy as np
import pytest
import torch

from datasets.audio import DatasetError, fit_length
from datasets.vctk_demand import VCTK_LAYOUT, VCTKDemand, speaker_of
from tests.datasets.corpora import make_vctk, vctk_pair, write_wav


def _index(name: str) -> int:
    """File index used by make_vctk for a training name p{200+s}_{u+1:03d}."""
    spk, utt = name.split("_")
    return 2 * (int(spk[1:]) - 200) + int(utt) - 1


def test_val_is_held_out_by_speaker_and_deterministic(vctk_root):
    train = VCTKDemand(vctk_root, split="train")
    val = VCTKDemand(vctk_root, split="val", val_fraction=0.1)
    train_10 = VCTKDemand(vctk_root, split="train", val_fraction=0.1)
    assert len(val) == 2 and len({speaker_of(n) for n in val.names}) == 1  # 1 of 12 speakers
    assert not set(val.names) & set(train_10.names)
    assert not {speaker_of(n) for n in val.names} & {speaker_of(n) for n in train_10.names}
    on_disk = sorted(p.stem for p in (vctk_root / "train/noisy").iterdir())
    assert sorted(val.names + train_10.names) == on_disk
    assert len(val) + len(train_10) == 24 and len(train) == 22
    assert VCTKDemand(vctk_root, split="val", val_fraction=0.1).names == val.names


def test_file_holdout(vctk_root):
    val = VCTKDemand(vctk_root, split="val", holdout="file", val_fraction=0.25)
    train = VCTKDemand(vctk_root, split="train", holdout="file", val_fraction=0.25)
    assert len(val) == 6 and len(train) == 18 and not set(val.names) & set(train.names)


def test_targets_are_clean_and_noise(vctk_root):
    ds = VCTKDemand(vctk_root, split="val")
    assert ds.source_names == ["clean", "noise"] and ds.n_sources == 2
    for idx, name in enumerate(ds.names):
        noisy, clean = vctk_pair(_index(name), 1600 + 200 * (int(name[-3:]) - 1))
        mix, tgt = ds[idx]
        np.testing.assert_array_equal(tgt[0].numpy(), clean)
        np.testing.assert_allclose(tgt[1].numpy(), noisy - clean, atol=1e-7)
        np.testing.assert_allclose(mix[0].numpy(), noisy, atol=1e-7)
        torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=0)


def test_test_split_reads_test_folder(vctk_root):
    ds = VCTKDemand(vctk_root, split="test", max_len_s=None)
    assert ds.names == ["p300_001", "p300_002", "p301_001", "p301_002"]
    assert ds[1][0].shape == (1, 1800)


def test_train_crops_and_tiling(vctk_root):
    ds = VCTKDemand(vctk_root, split="train", max_len_s=0.05)  # 800 samples
    torch.manual_seed(0)
    name = ds.names[0]
    noisy, clean = vctk_pair(_index(name), 1600)
    for _ in range(5):
        mix, tgt = ds[0]
        assert tgt.shape == (2, 800)
        start = int(np.argmin(np.abs(clean - float(tgt[0, 0]))))
        np.testing.assert_array_equal(tgt[0].numpy(), clean[start : start + 800])
        torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=0)
    long = VCTKDemand(vctk_root, split="train", max_len_s=0.25)  # 4000 > 1600: tiled
    _, tgt = long[0]
    assert tgt.shape == (2, 4000)
    np.testing.assert_array_equal(tgt[0, :1600].numpy(), clean)
    np.testing.assert_array_equal(tgt[0, 1600:3200].numpy(), clean)


def test_noise_augment_pairs_other_noise_at_same_snr(vctk_root):
    ds = VCTKDemand(vctk_root, split="train", noise_augment=1.0)
    torch.manual_seed(0)
    for idx in range(3):
        name = ds.names[idx]
        length = 1600 + 200 * (int(name[-3:]) - 1)
        noisy, clean = vctk_pair(_index(name), length)
        mix, tgt = ds[idx]
        np.testing.assert_array_equal(tgt[0].numpy(), clean)
        own = noisy - clean
        got = tgt[1].numpy().astype(np.float64)
        np.testing.assert_allclose(np.sum(got**2), np.sum(own.astype(np.float64) ** 2), rtol=1e-4)
        unit = got / np.linalg.norm(got)
        matches = []
        for j, other in enumerate(ds.names):
            n_j = 1600 + 200 * (int(other[-3:]) - 1)
            nz, cl = vctk_pair(_index(other), n_j)
            cand = fit_length((nz - cl).astype(np.float64), length, mode="tile")
            if np.allclose(unit, cand / np.linalg.norm(cand), atol=1e-5):
                matches.append(j)
        assert matches and idx not in matches
        torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="train"):
        VCTKDemand(vctk_root, split="test", noise_augment=0.5)


def test_resampling_from_48k(tmp_path):
    root = make_vctk(tmp_path / "v", fs=48000, train_speakers=2, per_speaker=1, length=4800)
    with pytest.raises(DatasetError, match=r"sample rate mismatch in .*48000 Hz"):
        VCTKDemand(root, split="test", fs=16000)[0]
    ds = VCTKDemand(root, split="test", fs=16000, resample=True)
    mix, tgt = ds[0]
    assert mix.shape == (1, 1600) and tgt.shape == (2, 1600)
    torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=0)


@pytest.fixture
def small(tmp_path):
    return make_vctk(tmp_path / "VCTK_DEMAND", train_speakers=2, per_speaker=1)


def test_errors(small, tmp_path):
    with pytest.raises(DatasetError) as err:
        VCTKDemand(tmp_path / "none", split="test")
    assert VCTK_LAYOUT in str(err.value)
    (small / "test/clean/p300_001.wav").unlink()
    with pytest.raises(DatasetError, match=r"missing file .*clean/p300_001\.wav"):
        VCTKDemand(small, split="test")
    write_wav(small / "test/clean/p300_001.wav", np.zeros(1500, np.float32), 16000)
    with pytest.raises(DatasetError, match=r"different lengths: .*noisy/p300_001\.wav"):
        VCTKDemand(small, split="test")[0]
    write_wav(small / "test/clean/p300_001.wav", np.zeros((2, 1600), np.float32), 16000)
    with pytest.raises(DatasetError, match=r"wrong number of channels in .*clean/p300_001"):
        VCTKDemand(small, split="test")[0]
    with pytest.raises(DatasetError, match="cannot hold out"):
        VCTKDemand(make_vctk(tmp_path / "one", train_speakers=1, per_speaker=1), split="val")

"""MUSDB18HQ on a tiny 44.1 kHz stereo tree: splits, resampling, channels, segments."""

import logging

import numpy as np
import pytest
import torch

from datasets.audio import DatasetError
from datasets.musdb import MUSDB18HQ, MUSDB_LAYOUT, VALID_TRACKS
from tests.datasets.corpora import (
    MUSDB_LEN,
    MUSDB_STEMS,
    MUSDB_TEST,
    MUSDB_TRAIN,
    make_musdb,
    musdb_stem,
    ramp_start,
    write_wav,
)


def _left(track: str, k: int) -> np.ndarray:
    return musdb_stem(MUSDB_TRAIN.index(track), k)[0]


def test_official_valid_tracks_are_held_out(musdb_root):
    train = MUSDB18HQ(musdb_root, split="train")
    valid = MUSDB18HQ(musdb_root, split="valid")
    test = MUSDB18HQ(musdb_root, split="test")
    assert valid.names == ["ANiMAL - Rockshow", "Leaf - Summerghost"]
    assert set(valid.names) <= set(VALID_TRACKS) and not set(train.names) & set(VALID_TRACKS)
    assert sorted(train.names + valid.names) == sorted(MUSDB_TRAIN)
    assert test.names == sorted(MUSDB_TEST)
    assert train.source_names == ["drums", "bass", "other", "vocals"] and train.n_sources == 4
    custom = MUSDB18HQ(musdb_root, split="valid", valid_tracks=["Artist B - Song"])
    assert custom.names == ["Artist B - Song"]
    listed = MUSDB18HQ(musdb_root, split="valid", valid_tracks="manifest")
    assert listed.names == [MUSDB_TRAIN[-1]]
    rest = MUSDB18HQ(musdb_root, split="train", valid_tracks="manifest")
    assert sorted(rest.names) == sorted(MUSDB_TRAIN[:-1])


def test_fallback_holdout_when_no_official_names(tmp_path, caplog):
    names = [f"Band {i} - Tune" for i in range(6)]
    root = make_musdb(tmp_path / "m", train=names, test=names[:1])
    with caplog.at_level(logging.WARNING, logger="datasets.musdb"):
        valid = MUSDB18HQ(root, split="valid", valid_fraction=0.34)
    assert "stable hash" in caplog.text
    train = MUSDB18HQ(root, split="train", valid_fraction=0.34)
    assert len(valid) == 2 and sorted(valid.names + train.names) == sorted(names)
    assert MUSDB18HQ(root, split="valid", valid_fraction=0.34).names == valid.names


def test_resampled_whole_track_length_and_sum(musdb_root):
    for fs in (8000, 22050):
        mix, tgt = MUSDB18HQ(musdb_root, split="valid", fs=fs)[0]
        n = round(MUSDB_LEN * fs / 44100)
        assert mix.shape == (1, n) and tgt.shape == (4, n)
        torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=1e-6)
    # a resampled ramp is still (away from the edges) the same ramp at the new rate
    _, tgt = MUSDB18HQ(musdb_root, split="valid", fs=22050)[1]  # Leaf - Summerghost
    mono = 0.25 * _left("Leaf - Summerghost", 0)
    np.testing.assert_allclose(tgt[0, 100:-100].numpy(), mono[200:-200:2], atol=1e-4)


def test_channel_modes(musdb_root):
    track = "Leaf - Summerghost"
    left = np.stack([_left(track, k) for k in range(4)])
    expect = {"mono": 0.25 * left, "left": left, "right": -0.5 * left}
    for mode, want in expect.items():
        _, tgt = MUSDB18HQ(musdb_root, split="valid", channels=mode)[1]
        np.testing.assert_allclose(tgt.numpy(), want, atol=1e-7)
    torch.manual_seed(0)
    ds = MUSDB18HQ(musdb_root, split="train", channels="random", segment_s=0.05)
    signs = set()
    for _ in range(12):
        _, tgt = ds[0]
        signs.add(float(np.sign(tgt[0, 0])))  # drums: positive on the left, negative right
    assert signs == {-1.0, 1.0}


def test_training_segments_are_contiguous(musdb_root):
    ds = MUSDB18HQ(musdb_root, split="train", channels="left", segment_s=0.1,
                   samples_per_track=3)
    assert len(ds) == 9 and ds.names[:2] == ["Artist A - Song#0", "Artist A - Song#1"]
    torch.manual_seed(0)
    starts = set()
    for _ in range(8):
        mix, tgt = ds[4]  # second track
        assert mix.shape == (1, 4410) and tgt.shape == (4, 4410)
        t = MUSDB_TRAIN.index("Artist B - Song")
        offsets = [musdb_stem(t, k)[0, 0] for k in range(4)]
        start = ramp_start(tgt[0].numpy(), 0, float(offsets[0]))
        for k in range(4):
            np.testing.assert_array_equal(tgt[k].numpy(), musdb_stem(t, k)[0, start:][:4410])
        torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=1e-6)
        starts.add(start)
    assert len(starts) > 3
    mix, tgt = MUSDB18HQ(musdb_root, split="train", fs=22050, segment_s=0.1)[0]
    assert tgt.shape == (4, 2205)


def test_random_mix_uses_independent_offsets(musdb_root):
    ds = MUSDB18HQ(musdb_root, split="train", channels="left", segment_s=0.1, random_mix=True)
    t = MUSDB_TRAIN.index("Artist A - Song")
    torch.manual_seed(0)
    mix, tgt = ds[0]
    starts = [ramp_start(tgt[k].numpy(), k, float(musdb_stem(t, k)[0, 0])) for k in range(4)]
    for k in range(4):
        np.testing.assert_array_equal(tgt[k].numpy(), musdb_stem(t, k)[0, starts[k]:][:4410])
    assert len(set(starts)) > 1
    torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="random_mix"):
        MUSDB18HQ(musdb_root, random_mix=True, mixture_from_stems=False)


def test_eval_segment_is_centred(musdb_root):
    ds = MUSDB18HQ(musdb_root, split="test", channels="left", eval_segment_s=0.1)
    _, tgt = ds[0]
    start = (MUSDB_LEN - 4410) // 2
    np.testing.assert_array_equal(tgt[2].numpy(), musdb_stem(0, 2)[0, start : start + 4410])
    torch.testing.assert_close(ds[0][1], tgt, rtol=0, atol=0)


def test_mixture_file_and_check(tmp_path):
    root = make_musdb(tmp_path / "m", train=["Leaf - Summerghost", "Other - Song"], test=[])
    track = root / "train" / "Leaf - Summerghost"
    marker = np.full((2, MUSDB_LEN), 0.125, np.float32)
    write_wav(track / "mixture.wav", marker, 44100)
    mix, _ = MUSDB18HQ(root, split="valid", mixture_from_stems=False)[0]
    assert torch.all(mix == 0.125)
    with pytest.raises(DatasetError, match=r"mixture\.wav is not the sum"):
        MUSDB18HQ(root, split="valid", check_mixture=True)[0]


def test_errors(tmp_path):
    with pytest.raises(DatasetError) as err:
        MUSDB18HQ(tmp_path / "none")
    assert MUSDB_LAYOUT in str(err.value)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no track folders"):
        MUSDB18HQ(tmp_path / "empty")
    root = make_musdb(tmp_path / "m", train=["A - a", "B - b"], test=[])
    write_wav(root / "train/A - a/bass.wav", np.zeros((2, 1000), np.float32), 44100)
    with pytest.raises(DatasetError, match=r"different lengths: .*A - a/bass\.wav"):
        MUSDB18HQ(root, split="train", valid_tracks=["B - b"])
    write_wav(root / "train/A - a/bass.wav", np.zeros((3, MUSDB_LEN), np.float32), 44100)
    with pytest.raises(DatasetError, match=r"wrong number of channels in .*A - a/bass\.wav"):
        MUSDB18HQ(root, split="train", valid_tracks=["B - b"])
    write_wav(root / "train/A - a/bass.wav", np.zeros((2, MUSDB_LEN), np.float32), 48000)
    with pytest.raises(DatasetError, match=r"sample rate mismatch in .*A - a/bass\.wav"):
        MUSDB18HQ(root, split="train", valid_tracks=["B - b"])
    (root / "train/A - a/bass.wav").unlink()
    with pytest.raises(DatasetError, match=r"missing file .*A - a/bass\.wav"):
        MUSDB18HQ(root, split="train", valid_tracks=["B - b"])
    (root / "manifest.json").unlink()
    with pytest.raises(DatasetError, match=r"valid_tracks.*manifest\.json"):
        MUSDB18HQ(root, split="train", valid_tracks="manifest")


def _slope_tree(root, n_tracks=4, length=8820):
    """Track t, stem k: a ramp of slope (t + 1)(k + 1) 1e-6 per sample (its fingerprint)."""
    names = [f"Band {t} - Tune" for t in range(n_tracks)]
    for t, name in enumerate(names):
        stems = [np.tile((t + 1) * (k + 1) * 1e-6 * np.arange(length, dtype=np.float32), (2, 1))
                 for k in range(4)]
        for k, stem in enumerate(stems):
            write_wav(root / "train" / name / f"{MUSDB_STEMS[k]}.wav", stem, 44100)
        write_wav(root / "train" / name / "mixture.wav", np.sum(stems, axis=0), 44100)
    return names


def _track_of(x: np.ndarray, k: int) -> float:
    return np.polyfit(np.arange(x.size), x.astype(np.float64), 1)[0] / ((k + 1) * 1e-6) - 1


def test_remix_tracks_draws_each_stem_from_its_own_track(tmp_path):
    names = _slope_tree(tmp_path)
    ds = MUSDB18HQ(tmp_path, split="train", channels="left", segment_s=0.05,
                   remix_tracks=True, valid_tracks=names[:1])  # fmt: skip
    torch.manual_seed(0)
    mixed = 0
    for i in range(len(ds)):
        mix, tgt = ds[i]
        tracks = [_track_of(tgt[k].numpy(), k) for k in range(4)]
        assert np.allclose(tracks, np.round(tracks), atol=1e-3), tracks  # unaltered crops
        assert round(tracks[0]) == names.index(ds.names[i // ds.samples_per_track])
        assert set(np.round(tracks)) <= {1, 2, 3}  # never the validation track
        mixed += len(set(np.round(tracks))) > 1
        torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=1e-6)
    assert mixed >= 2  # 3 items; all 4 stems from one track has probability 1/27
    valid = MUSDB18HQ(tmp_path, split="valid", channels="left", remix_tracks=True,
                      stem_gain_db=4.0, eq_db=6.0, valid_tracks=names[:1])  # fmt: skip
    _, tgt = valid[0]  # evaluation items are never remixed
    assert np.allclose([_track_of(tgt[k].numpy(), k) for k in range(4)], 0, atol=1e-3)


def test_stem_gains_are_bounded_and_colouring_keeps_the_sum(musdb_root):
    ds = MUSDB18HQ(musdb_root, split="train", channels="left", segment_s=0.1,
                   stem_gain_db=4.0)
    torch.manual_seed(1)
    gains = []
    for i in range(8):
        _, tgt = ds[i % len(ds)]
        for k in range(4):  # a gain g on a ramp of slope b: slope g b
            slope = np.polyfit(np.arange(tgt.shape[1]), tgt[k].numpy().astype(np.float64), 1)[0]
            gains.append(20 * np.log10(abs(slope) / (1e-5 * (k + 1))))
    assert max(np.abs(gains)) <= 4.0 + 1e-3 and np.std(gains) > 0.5
    coloured = MUSDB18HQ(musdb_root, split="train", channels="left", segment_s=0.1,
                         eq_db=6.0)
    plain = MUSDB18HQ(musdb_root, split="train", channels="left", segment_s=0.1)
    torch.manual_seed(2)
    mix, tgt = coloured[0]
    torch.manual_seed(2)  # the same crop (the start is drawn before the colours)
    _, ref = plain[0]
    torch.testing.assert_close(mix[0], tgt.sum(0), rtol=0, atol=1e-6)
    for k in range(4):
        assert not torch.allclose(tgt[k], ref[k], atol=1e-6)  # it did colour
        ratio_db = 20 * torch.log10(tgt[k].norm() / ref[k].norm())
        assert abs(float(ratio_db)) <= 6.0
    with pytest.raises(ValueError, match="mixture_from_stems"):
        MUSDB18HQ(musdb_root, remix_tracks=True, mixture_from_stems=False)
    with pytest.raises(ValueError, match="stem_gain_db"):
        MUSDB18HQ(musdb_root, stem_gain_db=-1.0)

"""WSJ0Mix on a tiny tree in the seed README layout, including every error case."""

import numpy as np
import pytest
import soundfile as sf
import torch

from datasets.audio import DatasetError
from datasets.wsj0_mix import WSJ0_LAYOUT, WSJ0Mix
from tests.datasets.corpora import WSJ_LENGTHS, make_wsj0, offset_of, ramp, ramp_start, write_wav


def test_whole_utterances_match_files(wsj0_root):
    ds = WSJ0Mix(wsj0_root, n_sources=2, fs=8000, cut="min", split="cv", check_sum=True)
    assert (ds.fs, ds.n_sources, ds.source_names) == (8000, 2, ["s1", "s2"])
    assert ds.names == ["utt00", "utt01"] and len(ds) == 2
    for i, length in enumerate(WSJ_LENGTHS["cv"]):
        mix, tgt = ds[i]
        assert mix.dtype == torch.float32 and tgt.dtype == torch.float32
        assert mix.shape == (1, length) and tgt.shape == (2, length)
        for k in range(2):
            np.testing.assert_array_equal(tgt[k].numpy(), ramp(length, k, offset_of(i)))
        torch.testing.assert_close(mix[0], tgt.sum(0), atol=1e-6, rtol=0)


def test_three_speakers(wsj0_root):
    ds = WSJ0Mix(wsj0_root, n_sources=3, fs=8000, cut="max", split="tt")
    mix, tgt = ds[0]
    assert ds.source_names == ["s1", "s2", "s3"] and tgt.shape == (3, WSJ_LENGTHS["tt"][0])


def test_random_crops_are_contiguous_slices(wsj0_root):
    ds = WSJ0Mix(wsj0_root, split="tr", max_len_s=0.25)  # 2000 samples
    torch.manual_seed(0)
    starts = set()
    for _ in range(20):
        mix, tgt = ds[0]  # utt00 has 4000 samples
        assert mix.shape == (1, 2000) and tgt.shape == (2, 2000)
        start = ramp_start(tgt[0].numpy(), 0, offset_of(0))
        assert 0 <= start <= 2000
        for k in range(2):
            full = ramp(4000, k, offset_of(0))
            np.testing.assert_array_equal(tgt[k].numpy(), full[start : start + 2000])
        torch.testing.assert_close(mix[0], tgt.sum(0), atol=1e-6, rtol=0)
        starts.add(start)
    assert len(starts) > 5


def test_crops_repeat_under_a_fixed_seed(wsj0_root):
    ds = WSJ0Mix(wsj0_root, split="tr", max_len_s=0.1)
    torch.manual_seed(3)
    first = [ds[i][1] for i in range(len(ds))]
    torch.manual_seed(3)
    second = [ds[i][1] for i in range(len(ds))]
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_short_utterance_is_zero_padded(wsj0_root):
    ds = WSJ0Mix(wsj0_root, split="tr", max_len_s=0.25)
    mix, tgt = ds[2]  # utt02 has 1500 samples < 2000
    assert tgt.shape == (2, 2000)
    np.testing.assert_array_equal(tgt[0, :1500].numpy(), ramp(1500, 0, offset_of(2)))
    assert torch.all(tgt[:, 1500:] == 0) and torch.all(mix[:, 1500:] == 0)


def test_eval_split_crop_starts_at_zero_and_is_deterministic(wsj0_root):
    ds = WSJ0Mix(wsj0_root, split="cv", max_len_s=0.1)
    a, b = ds[1][1], ds[1][1]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(a[0].numpy(), ramp(2500, 0, offset_of(1))[:800])


def test_max_n_samples_keeps_first_sorted(wsj0_root):
    ds = WSJ0Mix(wsj0_root, split="tr", max_n_samples=2)
    assert ds.names == ["utt00", "utt01"]


def test_mix_dir_option(tmp_path):
    base = make_wsj0(tmp_path / "w") / "2speakers/wav8k/min/cv"
    write_wav(base / "mix_alt" / "utt00.wav", np.full(2000, 0.25, np.float32), 8000)
    write_wav(base / "mix_alt" / "utt01.wav", np.full(2500, 0.5, np.float32), 8000)
    ds = WSJ0Mix(tmp_path / "w", split="cv", mix_dir="mix_alt")
    assert torch.all(ds[1][0] == 0.5)


def test_invalid_options(wsj0_root):
    with pytest.raises(ValueError, match="n_sources"):
        WSJ0Mix(wsj0_root, n_sources=4)
    with pytest.raises(ValueError, match="split"):
        WSJ0Mix(wsj0_root, split="train")


@pytest.fixture
def tree(tmp_path):
    """A fresh tree to corrupt, and the cv folder inside it."""
    root = make_wsj0(tmp_path / "wsj0_mix")
    return root, root / "2speakers/wav8k/min/cv"


def test_missing_folder_names_layout(tmp_path):
    with pytest.raises(DatasetError) as err:
        WSJ0Mix(tmp_path / "nowhere", split="cv")
    assert "2speakers/wav8k/min/cv" in str(err.value) and WSJ0_LAYOUT in str(err.value)


def test_missing_source_folder(tree):
    root, base = tree
    for f in (base / "s2").iterdir():
        f.unlink()
    (base / "s2").rmdir()
    with pytest.raises(DatasetError, match="missing folder .*s2"):
        WSJ0Mix(root, split="cv")


def test_no_files(tree):
    root, base = tree
    for f in (base / "mix").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="no .wav files found"):
        WSJ0Mix(root, split="cv")


def test_missing_source_file(tree):
    root, base = tree
    (base / "s1" / "utt01.wav").unlink()
    with pytest.raises(DatasetError, match=r"missing file .*s1/utt01\.wav"):
        WSJ0Mix(root, split="cv")


def test_unreadable_file(tree):
    root, base = tree
    (base / "s2" / "utt00.wav").write_bytes(b"not a wav file at all")
    ds = WSJ0Mix(root, split="cv")
    with pytest.raises(DatasetError, match=r"unreadable audio file .*s2/utt00\.wav"):
        ds[0]


def test_empty_file(tree):
    root, base = tree
    sf.write(str(base / "s1" / "utt00.wav"), np.zeros(0, np.float32), 8000)
    with pytest.raises(DatasetError, match=r"empty audio file .*s1/utt00\.wav"):
        WSJ0Mix(root, split="cv")[0]


def test_sample_rate_mismatch(tree):
    root, base = tree
    write_wav(base / "s1" / "utt00.wav", ramp(2000, 0, offset_of(0)), 16000)
    with pytest.raises(DatasetError, match=r"sample rate mismatch in .*s1/utt00\.wav.*16000"):
        WSJ0Mix(root, split="cv")[0]


def test_sources_of_different_lengths(tree):
    root, base = tree
    write_wav(base / "s2" / "utt01.wav", ramp(2400, 1, offset_of(1)), 8000)
    with pytest.raises(DatasetError, match=r"different lengths: .*s2/utt01\.wav has 2400"):
        WSJ0Mix(root, split="cv")[1]


def test_mixture_not_sum(tree):
    root, base = tree
    write_wav(base / "mix" / "utt01.wav", np.zeros(2500, np.float32), 8000)
    assert WSJ0Mix(root, split="cv")[1][0].shape == (1, 2500)  # no check by default
    with pytest.raises(DatasetError, match=r"mix/utt01\.wav is not the sum"):
        WSJ0Mix(root, split="cv", check_sum=True)[1]


def test_sum_check_tolerates_16_bit_quantisation(tmp_path):
    base = tmp_path / "w/2speakers/wav8k/min/tt"
    rng = np.random.default_rng(0)
    srcs = (0.3 * rng.standard_normal((2, 1000))).clip(-0.45, 0.45)
    for k in range(2):
        write_wav(base / f"s{k + 1}" / "a.wav", srcs[k], 8000, subtype="PCM_16")
    write_wav(base / "mix" / "a.wav", srcs.sum(0), 8000, subtype="PCM_16")
    mix, tgt = WSJ0Mix(tmp_path / "w", split="tt", check_sum=True)[0]
    assert mix.shape == (1, 1000)


def test_wrong_number_of_channels(tree):
    root, base = tree
    write_wav(base / "mix" / "utt00.wav", np.zeros((2, 2000), np.float32), 8000)
    with pytest.raises(DatasetError, match=r"wrong number of channels in .*mix/utt00\.wav"):
        WSJ0Mix(root, split="cv")[0]


def test_incomplete_generated_corpus_is_refused_with_the_command(tmp_path):
    import json

    from datasets.synth.manifest import prepare_root

    make_wsj0(tmp_path)
    assert len(WSJ0Mix(tmp_path, split="tt")) == 2  # a corpus without manifest: real data
    prepare_root(tmp_path / "2speakers", {"seed": 0, "n_sources": 2}, overwrite=True)
    stub = json.loads((tmp_path / "2speakers" / "manifest.json").read_text())
    assert stub["status"] == "incomplete"  # what a killed generation leaves
    with pytest.raises(DatasetError, match=r"incomplete generated.*python -m datasets\.synth"):
        WSJ0Mix(tmp_path, split="tt")
    assert len(WSJ0Mix(tmp_path, split="tt", allow_incomplete=True)) == 2

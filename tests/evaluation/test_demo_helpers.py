"""What `make demo` (demo.py) picks: the checkpoint it evaluates and its sampler."""

import pytest

import demo


def test_best_checkpoint_is_the_highest_si_sdr_in_the_names(tmp_path):
    for name in ("epoch-001_si_sdr--1.500.ckpt", "epoch-004_si_sdr--0.290.ckpt",
                 "epoch-007_si_sdr--2.850.ckpt", "last.ckpt"):
        (tmp_path / name).write_bytes(b"")
    assert demo.best_checkpoint(tmp_path).name == "epoch-004_si_sdr--0.290.ckpt"
    for p in tmp_path.glob("epoch-*"):
        p.unlink()
    assert demo.best_checkpoint(tmp_path).name == "last.ckpt"
    (tmp_path / "last.ckpt").unlink()
    with pytest.raises(SystemExit, match="no checkpoint"):
        demo.best_checkpoint(tmp_path)

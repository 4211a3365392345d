"""separate.py under bad input and faults: nothing lost, nothing half-written, clear errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import separate
from evaluation.separator import Separator
from tests.evaluation.test_separate import FakeModel, tones

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """separate.main with a stand-in model; returns (model, ckpt args)."""
    model = FakeModel((0.5, 0.5))
    (tmp_path / "m.ckpt").write_bytes(b"x")
    monkeypatch.setattr(separate, "load_model", lambda path, device, blend, one_shot: model)
    return model, ["--model", str(tmp_path / "m.ckpt"), "-d", "cpu"]


def outputs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


def test_non_finite_input_is_refused_by_name(tmp_path, fake, capsys):
    x = tones(8000, 1.0, 1)[:, 0]
    x[[100, 4000, 7000]] = [np.nan, np.inf, np.nan]
    sf.write(tmp_path / "bad.wav", x, 8000, subtype="FLOAT")
    sf.write(tmp_path / "good.wav", tones(8000, 1.0, 1), 8000)
    code = separate.main([str(tmp_path / "bad.wav"), str(tmp_path / "out"), *fake[1]])
    err = capsys.readouterr().err
    assert code == 1 and "bad.wav" in err and "3 non-finite sample(s)" in err
    assert "at 0.013 s" in err
    assert outputs(tmp_path / "out") == []
    assert separate.main([str(tmp_path / "good.wav"), str(tmp_path / "out"), *fake[1]]) == 0


def test_too_short_input_is_refused(tmp_path, fake, capsys):
    sf.write(tmp_path / "one.wav", np.array([0.3], np.float32), 8000)
    assert separate.main([str(tmp_path / "one.wav"), str(tmp_path / "out"), *fake[1]]) == 1
    assert "too short to separate: 1 sample(s)" in capsys.readouterr().err
    assert outputs(tmp_path / "out") == []


def test_non_finite_output_is_never_moved_into_place(tmp_path):
    class NaNModel(FakeModel):
        def separate(self, mix, **kw):
            est, n, _ = super().separate(mix, **kw)
            return est * float("nan"), n, None

    sf.write(tmp_path / "a.wav", tones(8000, 1.0, 1), 8000)
    with pytest.raises(RuntimeError, match="non-finite samples; nothing was written"):
        Separator(NaNModel()).separate_file(tmp_path / "a.wav", tmp_path / "out")
    assert outputs(tmp_path / "out") == []


def test_same_name_inputs_are_refused_before_any_work(tmp_path, fake, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "dup.wav", tones(8000, 0.5, 1), 8000)
    sf.write(src / "dup.flac", tones(8000, 0.5, 1), 8000)
    with pytest.raises(SystemExit) as e:
        separate.main([str(src), str(tmp_path / "out"), *fake[1]])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "dup.flac" in err and "dup.wav" in err and "trackext" in err
    assert not (tmp_path / "out").exists() and fake[0].calls == []
    # keeping the extension in the name separates both
    args = [str(src), str(tmp_path / "out"), *fake[1],
            "--filename", "{source}/{track}.{trackext}.wav"]
    assert separate.main(args) == 0
    assert outputs(tmp_path / "out") == ["s1/dup.flac.wav", "s1/dup.wav.wav", "s2/dup.flac.wav",
                                         "s2/dup.wav.wav"]


def test_output_folder_equal_to_input_folder_is_explained(tmp_path, fake, capsys):
    sf.write(tmp_path / "a.wav", tones(8000, 0.5, 1), 8000)
    with pytest.raises(SystemExit):
        separate.main([str(tmp_path), str(tmp_path), *fake[1]])
    assert "output folder is the input folder" in capsys.readouterr().err


def test_stale_partials_of_dead_runs_are_removed_live_ones_kept(tmp_path, fake, capsys):
    out = tmp_path / "out"
    (out / "s1").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = out / "s1" / f".a.wav.{dead}.partial"
    live = out / "s1" / f".b.wav.{os.getpid()}.partial"
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    sf.write(tmp_path / "a.wav", tones(8000, 0.5, 1), 8000)
    assert separate.main([str(tmp_path / "a.wav"), str(out), *fake[1]]) == 0
    assert not stale.exists() and live.exists()
    assert "left by an interrupted run" in capsys.readouterr().err


def test_full_disk_is_named_and_leaves_nothing(tmp_path, fake, monkeypatch, capsys):
    sf.write(tmp_path / "a.wav", tones(8000, 1.0, 1), 8000)
    sf.write(tmp_path / "b.wav", tones(8000, 1.0, 1), 8000)

    def fail_write(self, data):
        raise sf.LibsndfileError(2, "System error : ")

    monkeypatch.setattr(sf.SoundFile, "write", fail_write)
    monkeypatch.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 0})())
    code = separate.main([str(tmp_path), str(tmp_path / "out"), *fake[1]])
    err = capsys.readouterr().err
    assert code == 1 and "no space left on device" in err
    assert err.count("no space left") == 1  # stops at the first file
    assert outputs(tmp_path / "out") == []


@pytest.mark.slow
def test_sigterm_during_separation_leaves_no_partial_files(tiny_ckpt, tmp_path):
    sf.write(tmp_path / "long.wav", tones(8000, 30.0, 1), 8000)
    out = tmp_path / "out"
    cmd = [sys.executable, "separate.py", str(tmp_path / "long.wav"), str(out), "--model",
           str(tiny_ckpt), "-N", "30", "--segment", "0.5", "--batch-size", "1", "-d", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.rglob("*.partial")) and time.time() < deadline:
        time.sleep(0.2)
    assert list(out.rglob("*.partial")), "the separation never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "partial files were removed" in err
    assert outputs(out) == []

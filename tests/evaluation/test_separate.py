"""Tests of the Separator API and the separate.py CLI (evaluation/separator.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import separate
from evaluation.separator import MUSIC_SEGMENT_S, SEGMENT_S, Separator, collect_inputs

ROOT = Path(__file__).resolve().parents[2]


class FakeModel:
    """Stand-in with the DiffSepModel inference interface: fixed fractions of the mix."""

    def __init__(self, scales=(1.0, 0.0), names=None, fs=8000, noise=0.0, fail_after=None):
        self.fs = fs
        self.scales = scales
        self.n_sources = len(scales)
        self.source_names = names or [f"s{k + 1}" for k in range(len(scales))]
        self.noise = noise
        self.fail_after = fail_after
        self.calls = []

    def separate(
        self, mix, N=None, snr=None, corrector_steps=None, denoise=None, schedule=None,
        predictor=None, corrector=None, final_step=None, intermediate=False, generator=None,
    ):  # fmt: skip
        kwargs = dict(N=N, snr=snr, corrector_steps=corrector_steps, denoise=denoise)
        kwargs.update(schedule=schedule, predictor=predictor, corrector=corrector)
        self.calls.append({"shape": tuple(mix.shape), "generator": generator, **kwargs})
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise RuntimeError("sampler exploded")
        est = torch.cat([s * mix for s in self.scales], dim=1)
        if self.noise:
            est = est + self.noise * torch.randn(est.shape, generator=generator)
        return est, N or 1, None


class TinySplitter(torch.nn.Module):
    """Tiny deterministic 'network': a centred 9-tap moving average splits low / high."""

    fs = 8000
    n_sources = 2
    source_names = ["low", "high"]

    def __init__(self):
        super().__init__()
        self.kernel = torch.nn.Parameter(torch.full((1, 1, 9), 1 / 9), requires_grad=False)

    def apply(self, mix):
        low = torch.nn.functional.conv1d(mix, self.kernel, padding=4)
        return torch.cat([low, mix - low], dim=1)

    def separate(self, mix, generator=None, **kwargs):
        return self.apply(mix), 1, None


def tones(sr, seconds, channels, freqs=(110.0, 440.0, 1900.0, 2900.0)):
    """Band-limited test signal (all below 4 kHz, so it survives resampling to 8 kHz)."""
    t = np.arange(int(round(sr * seconds))) / sr
    rng = np.random.default_rng(0)
    chans = [sum(rng.uniform(0.1, 0.2) * np.sin(2 * np.pi * f * t + c) for f in freqs)
             for c in range(channels)]  # fmt: skip
    return np.stack(chans, axis=1).astype(np.float32)  # (L, C)


@pytest.mark.parametrize("sr,channels", [(11025, 2), (44100, 1), (8000, 2)])
def test_tensor_any_rate_and_channels_matches_direct_separation(sr, channels):
    x = tones(sr, 1.37, channels)
    model = TinySplitter()
    sep = Separator(model, segment=0.5, overlap=0.25, batch_size=3)
    assert not sep.rematch  # named stems have a fixed order
    out = sep.separate_tensor(torch.from_numpy(x.T), sr)
    assert list(out) == ["low", "high"]
    assert all(v.shape == (channels, len(x)) for v in out.values())
    # Independent reference: resample the whole signal, apply the module once, go back.
    at_fs = soxr.resample(x, sr, 8000) if sr != 8000 else x
    ref = model.apply(torch.from_numpy(at_fs.T.copy())[:, None]).numpy()  # (C, K, n)
    for k, name in enumerate(model.source_names):
        back = ref[:, k].T.copy()
        back = soxr.resample(back, 8000, sr) if sr != 8000 else back
        n = min(len(back), len(x))
        err = np.abs(out[name].numpy().T[100 : n - 100] - back[100 : n - 100]).max()
        assert err < 0.02, (name, err)
    total = out["low"] + out["high"]
    assert np.abs(total.numpy().T[100:-100] - x[100:-100]).max() < 0.02


def test_file_outputs_have_the_input_rate_length_channels(tmp_path):
    x = tones(44100, 1.1, 2)
    sf.write(tmp_path / "song.wav", x, 44100, subtype="PCM_16")
    sep = Separator(FakeModel((1.0, 0.0)), segment=0.4, batch_size=2)
    paths = sep.separate_file(tmp_path / "song.wav", tmp_path / "out")
    assert paths == [tmp_path / "out" / "s1" / "song.wav", tmp_path / "out" / "s2" / "song.wav"]
    x16, _ = sf.read(tmp_path / "song.wav", dtype="float32")
    for p in paths:
        info = sf.info(p)
        assert (info.samplerate, info.frames, info.channels) == (44100, len(x), 2)
        assert info.subtype == "FLOAT"
    s1, _ = sf.read(paths[0], dtype="float32")
    assert np.abs(s1[200:-200] - x16[200:-200]).max() < 0.01
    assert np.abs(sf.read(paths[1])[0]).max() == 0


def test_template_subtype_and_mono(tmp_path):
    x = tones(22050, 0.8, 2)
    sf.write(tmp_path / "mix.flac", x, 22050)
    names = ["drums", "bass", "other", "vocals"]
    sep = Separator(FakeModel((0.1, 0.2, 0.3, 0.4), names), segment=0.3, mono=True)
    paths = sep.separate_file(
        tmp_path / "mix.flac", tmp_path / "out", "{track}/{source}.{trackext}", subtype="PCM_16"
    )
    assert paths == [tmp_path / "out" / "mix" / f"{n}.flac" for n in names]
    stems = [sf.read(p, dtype="float32")[0] for p in paths]
    assert all(s.shape == (len(x),) for s in stems)  # mono downmix
    assert sf.info(paths[0]).subtype == "PCM_16"
    # The fractions already sum to one, so the least-squares rescale keeps them.
    np.testing.assert_allclose(stems[3][300:-300], 0.4 * x.mean(1)[300:-300], atol=5e-3)


def test_cli_flags_reach_the_model(tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", tones(8000, 2.0, 2), 8000)
    (tmp_path / "m.ckpt").write_bytes(b"x")
    model = FakeModel((1.0, 0.0))
    blends = []
    monkeypatch.setattr(separate, "load_model",
                        lambda path, device, blend, one_shot: blends.append(blend) or model)
    args = [str(tmp_path / "a.wav"), str(tmp_path / "out"), "--model", str(tmp_path / "m.ckpt")]
    args += ["--no-blend", "-N", "7", "--snr", "0.3", "--corrector-steps", "2"]
    args += ["--denoise", "false"]
    args += ["-s", "log", "--predictor", "euler_maruyama", "--corrector", "langevin"]
    args += ["--seed", "3"]
    args += ["--segment", "0.5", "--batch-size", "2", "-d", "cpu"]
    assert separate.main(args) == 0
    expected = dict(N=7, snr=0.3, corrector_steps=2, denoise=False, schedule="log")
    expected.update(predictor="euler_maruyama", corrector="langevin")
    for call in model.calls:
        assert {k: call[k] for k in expected} == expected
        assert call["generator"].initial_seed() == 3
        assert call["shape"][1:] == (1, 4000)  # 0.5 s segments at 8 kHz
        assert call["shape"][0] <= 2
    assert sum(c["shape"][0] for c in model.calls) == 2 * 5  # 2 channels x 5 segments
    assert sf.info(tmp_path / "out" / "s2" / "a.wav").channels == 2
    assert blends == [False]


def test_seed_makes_runs_reproducible():
    x = torch.randn(2, 6000)

    def run(seed):
        sep = Separator(FakeModel((1.0, 0.0), noise=0.1), segment=0.25, seed=seed)
        return sep.separate_tensor(x)["s2"]

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


def test_unreadable_file_is_reported_and_skipped(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "good.wav", tones(16000, 0.7, 1), 16000)
    sf.write(src / "sub" / "deep.flac", tones(8000, 0.5, 2), 8000)
    (src / "broken.wav").write_bytes(b"RIFF....WAVEfmt this is not audio")
    (src / "notes.txt").write_text("ignored")
    (tmp_path / "m.ckpt").write_bytes(b"x")
    monkeypatch.setattr(separate, "load_model",
                        lambda path, device, blend, one_shot: FakeModel((1.0, 0.0)))
    out = tmp_path / "out"
    rc = separate.main([str(src), str(out), "--model", str(tmp_path / "m.ckpt"), "-r"])
    assert rc == 1
    assert "broken.wav" in capsys.readouterr().err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["s1/good.wav", "s1/sub/deep.wav", "s2/good.wav", "s2/sub/deep.wav"]


def test_failure_midway_leaves_no_partial_files(tmp_path):
    sf.write(tmp_path / "long.wav", tones(8000, 3.0, 1), 8000)
    sep = Separator(FakeModel((1.0, 0.0), fail_after=2), segment=0.25, batch_size=1, block=1000)
    with pytest.raises(RuntimeError, match="exploded"):
        sep.separate_file(tmp_path / "long.wav", tmp_path / "out")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_missing_model_is_explained(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        separate.main([str(tmp_path), str(tmp_path / "out"), "--model", str(tmp_path / "x.ckpt")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "speech-2spk-8k" in err


def test_missing_shipped_model_is_explained(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("models.pretrained.PRETRAINED_DIR", tmp_path / "nowhere")
    with pytest.raises(SystemExit) as e:
        separate.main([str(tmp_path), str(tmp_path / "out")])
    assert e.value.code == 2
    assert "the shipped model 'speech-2spk-8k' is missing" in capsys.readouterr().err


def test_without_model_the_shipped_model_separates(tmp_path, monkeypatch):
    from models.pretrained import DEFAULT_MODEL, pretrained_path

    fake = tmp_path / "pretrained"
    fake.mkdir()
    (fake / f"{DEFAULT_MODEL}.ckpt").write_bytes(b"stand-in")
    monkeypatch.setattr("models.pretrained.PRETRAINED_DIR", fake)
    loaded = []
    monkeypatch.setattr(separate, "load_model",
                        lambda p, d, blend, one_shot: loaded.append((p, blend)) or FakeModel())
    sf.write(tmp_path / "a.wav", tones(16000, 0.5, 1), 16000)
    assert separate.main([str(tmp_path / "a.wav"), str(tmp_path / "out")]) == 0
    assert loaded == [(pretrained_path(DEFAULT_MODEL), True)]
    assert pretrained_path(DEFAULT_MODEL) == fake / f"{DEFAULT_MODEL}.ckpt"
    assert sf.info(tmp_path / "out" / "s1" / "a.wav").samplerate == 16000


@pytest.mark.parametrize(
    "extra,message",
    [(["--overlap", "0"], "overlap > 0"), (["--filename", "{speaker}.wav"], "template")],
)
def test_bad_options_are_refused_before_any_work(tmp_path, monkeypatch, capsys, extra, message):
    sf.write(tmp_path / "a.wav", np.zeros(100), 8000)
    (tmp_path / "m.ckpt").write_bytes(b"x")
    model = FakeModel()
    monkeypatch.setattr(separate, "load_model", lambda path, device, blend, one_shot: model)
    args = [str(tmp_path / "a.wav"), str(tmp_path / "out"), "--model", str(tmp_path / "m.ckpt")]
    with pytest.raises(SystemExit) as e:
        separate.main(args + extra)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert model.calls == [] and not (tmp_path / "out").exists()


def test_collect_inputs_excludes_output_folder(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(10), 8000)
    (tmp_path / "out" / "s1").mkdir(parents=True)
    sf.write(tmp_path / "out" / "s1" / "a.wav", np.zeros(10), 8000)
    found = collect_inputs(tmp_path, recursive=True, exclude=tmp_path / "out")
    assert found == [(tmp_path / "a.wav", "a")]


MEMORY_PROBE = """
import sys, time
import torch
from evaluation.separator import Separator

def mib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024

class Fake:
    fs, n_sources, source_names = 8000, 2, ["s1", "s2"]
    def separate(self, mix, generator=None, **kwargs):
        return torch.cat([mix, torch.zeros_like(mix)], 1), 1, None

sep = Separator(Fake(), segment=4.0, overlap=0.25, batch_size=4)
sep.separate_tensor(torch.randn(40000))  # warm up lazy initialisations
before = mib("VmRSS:")
start = time.time()
sep.separate_file(sys.argv[1], sys.argv[2])
print(mib("VmHWM:") - before, time.time() - start)
"""


@pytest.mark.slow
def test_ten_minute_file_in_bounded_memory(tmp_path):
    fs, minutes = 8000, 10
    n = fs * 60 * minutes
    rng = np.random.default_rng(0)
    with sf.SoundFile(tmp_path / "long.wav", "w", fs, 1, "FLOAT") as f:
        for _ in range(0, n, fs * 30):
            f.write(rng.uniform(-0.5, 0.5, fs * 30).astype(np.float32))
    cmd = [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "long.wav"), str(tmp_path / "out")]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    peak_mib, seconds = map(float, res.stdout.split())
    # Holding the input and two float32 stems alone would take 3 * 4 * n bytes (55 MiB).
    whole_state = 3 * 4 * n / 2**20
    print(f"peak extra {peak_mib:.1f} MiB (whole state >= {whole_state:.0f} MiB), {seconds:.1f} s")
    assert peak_mib < whole_state / 4
    assert seconds < 20
    s1 = sf.read(tmp_path / "out" / "s1" / "long.wav", dtype="float32")[0]
    x = sf.read(tmp_path / "long.wav", dtype="float32")[0]
    assert s1.shape == x.shape and np.abs(s1 - x).max() < 1e-5


@pytest.mark.slow
def test_cli_end_to_end_with_a_tiny_checkpoint(tiny_ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", tones(16000, 0.9, 2), 16000, subtype="PCM_16")  # 2 segments
    sf.write(src / "b.flac", tones(8000, 0.3, 1), 8000)  # shorter than a segment
    out = tmp_path / "out"
    opts = ["-N", "2", "--corrector", "none", "--segment", "0.5", "--batch-size", "4"]
    opts += ["--seed", "1", "-d", "cpu"]
    cmd = [sys.executable, "separate.py", str(src), str(out), "--model", str(tiny_ckpt), *opts]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    for name, (sr, channels, frames) in {"a": (16000, 2, 14400), "b": (8000, 1, 2400)}.items():
        stems = []
        for source in ("s1", "s2"):
            info = sf.info(out / source / f"{name}.wav")
            assert (info.samplerate, info.channels, info.frames) == (sr, channels, frames)
            stems.append(sf.read(out / source / f"{name}.wav", dtype="float32")[0])
        assert all(np.isfinite(s).all() and np.abs(s).max() > 1e-3 for s in stems)
        assert np.abs(stems[0] - stems[1]).max() > 1e-3
    # Same result through the API in this process: the CLI passes its options on.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sep = Separator.from_checkpoint(
            tiny_ckpt, "cpu", segment=0.5, batch_size=4, seed=1, N=2, corrector="none"
        )
        sep.separate_file(src / "a.wav", tmp_path / "api")
    finally:
        torch.set_num_threads(threads)
    api = sf.read(tmp_path / "api" / "s2" / "a.wav", dtype="float32")[0]
    np.testing.assert_allclose(api, sf.read(out / "s2" / "a.wav", dtype="float32")[0], atol=1e-4)


def test_default_segment_follows_the_kind_of_sources():
    speech = Separator(FakeModel((1.0, 0.0)))
    music = Separator(FakeModel((0.1, 0.2, 0.3, 0.4), ["drums", "bass", "other", "vocals"]))
    assert speech.segment == round(SEGMENT_S * 8000)
    assert music.segment == round(MUSIC_SEGMENT_S * 8000) and MUSIC_SEGMENT_S > SEGMENT_S
    assert Separator(FakeModel((1.0, 0.0)), segment=0.5).segment == 4000

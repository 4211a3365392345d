"""bench/gpu_voices.py: the Opus pack round trip, and its GPU run dry on a CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import gpu_voices  # noqa: E402

from tests.datasets.corpora import write_wav  # noqa: E402

FS = 8000


def voiced(f0: float, seconds: float, seed: int) -> np.ndarray:
    """A vowel-like harmonic tone with a slow vibrato and a little breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / FS
    x = sum(np.sin(h * phase) / h for h in range(1, 12) if h * f0 < FS / 2)
    return (0.05 * x + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def make_voices(root: Path, n_tr: int = 6, n_cv: int = 2) -> Path:
    base = root / "2speakers" / "wav8k" / "min"
    for split, n in (("tr", n_tr), ("cv", n_cv)):
        for i in range(n):
            a, b = f"pkg.a{i % 3}", f"pkg.b{i % 2}"
            name = f"{a}-{split}{i:05d}s1_0.0000_{b}-{split}{i:05d}s2_-1.0000"
            s1 = voiced(110 + 20 * i, 1.5, i)
            s2 = 0.7 * voiced(210 + 15 * i, 1.5, 100 + i)
            for sub, x in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
                write_wav(base / split / sub / f"{name}.wav", x, FS)
    return root


def snr_db(ref, est):
    n = min(len(ref), len(est))
    ref, est = ref[:n], est[:n]
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


def test_pack_keeps_to_its_budget_and_unpacks_to_a_consistent_corpus(tmp_path):
    root = make_voices(tmp_path / "voices")
    out = tmp_path / "pack"
    full = gpu_voices.pack(root, out, max_mb=10.0, n_cv=1)
    assert len(full["names"]["tr"]) == 6 and len(full["names"]["cv"]) == 1
    per_item = full["bytes"] / 7
    # a budget of about three items holds fewer than six, and never more bytes than asked
    small = gpu_voices.pack(root, out, max_mb=3.5 * per_item / 2**20, n_cv=1)
    assert 1 <= len(small["names"]["tr"]) < 6 and small["bytes"] <= 3.5 * per_item
    packed = sorted(p.stem for p in (out / "tr" / "s1").glob("*.ogg"))
    assert packed == sorted(small["names"]["tr"])  # the rerun started clean
    corpus = tmp_path / "unpacked"
    gpu_voices.unpack(out, corpus)
    base = corpus / "2speakers" / "wav8k" / "min"
    for split, names in small["names"].items():
        for name in names:
            s1, fs = sf.read(base / split / "s1" / f"{name}.wav", dtype="float32")
            s2, _ = sf.read(base / split / "s2" / f"{name}.wav", dtype="float32")
            mix, _ = sf.read(base / split / "mix" / f"{name}.wav", dtype="float32")
            assert fs == FS and np.array_equal(mix, s1 + s2)
            orig, _ = sf.read(root / "2speakers" / "wav8k" / "min" / split / "s1" / f"{name}.wav")
            assert abs(len(s1) - len(orig)) < 0.01 * FS
            assert snr_db(orig, s1) > 10  # lossy, yet the same signal

    from datasets.wsj0_mix import WSJ0Mix

    tr = WSJ0Mix(corpus, 2, FS, "min", "tr", max_len_s=0.5)
    assert len(tr) == len(small["names"]["tr"])


def test_an_incomplete_pack_is_refused(tmp_path):
    root = make_voices(tmp_path / "voices", n_tr=2, n_cv=1)
    out = tmp_path / "pack"
    gpu_voices.pack(root, out, max_mb=10.0, n_cv=1)
    (out / gpu_voices.PACK_MANIFEST).unlink()
    with pytest.raises(SystemExit, match="incomplete"):
        gpu_voices.unpack(out, tmp_path / "unpacked")


def test_split_file_cuts_a_file_into_parts_that_join_back(tmp_path):
    blob = os.urandom(2500)
    f = tmp_path / "model.ckpt"
    f.write_bytes(blob)
    parts = gpu_voices.split_file(f, part_bytes=1000)
    assert [p.name for p in parts] == [f"model.ckpt.part{i}" for i in range(3)]
    assert not f.exists() and b"".join(p.read_bytes() for p in parts) == blob


def dry_run(tmp_path: Path, command: str, n_cv: int, *options: str):
    """`gpu_voices.py COMMAND --dry-run` on a pack of a small fake corpus: (stdout, out)."""
    root = make_voices(tmp_path / "voices", n_tr=4, n_cv=n_cv)
    pack = tmp_path / "pack"
    gpu_voices.pack(root, pack, max_mb=10.0, n_cv=n_cv)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "bench/gpu_voices.py", command, "--pack", str(pack),
                           "--out", str(out), "--dry-run", "--work", str(tmp_path / "work"),
                           *options], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout, out


@pytest.mark.slow
def test_gpu_voices_dry_run(tmp_path):
    stdout, out = dry_run(tmp_path, "train", 1)
    report = json.loads((out / "gpu_voices.json").read_text())
    assert report["dry_run"] is True and report["pack_tr_items"] == 4
    assert report["train"]["steps_per_s"] > 0
    whole = out / "speech-2spk-8k-gpu.ckpt"
    whole.write_bytes(b"".join((out / p).read_bytes() for p in report["parts"]))
    state = torch.load(whole, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and "DRY RUN" in stdout
    from models.loading import load_model

    model = load_model(whole, "cpu")
    assert model.fs == FS and model.sampler["N"] == 8


def _git_tree(root: Path) -> Path:
    """A git checkout with a tracked, an untracked and an ignored file of known sizes."""
    root.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    (root / ".gitignore").write_text("/ignored/\n/.whl/\n")
    (root / "tracked.bin").write_bytes(b"t" * 3000)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    (root / "untracked.bin").write_bytes(b"u" * 500)
    (root / "ignored").mkdir()
    (root / "ignored" / "big.bin").write_bytes(b"i" * 10**6)
    return root


def test_the_pack_gets_the_room_the_tracked_files_and_wheels_leave(tmp_path):
    root = _git_tree(tmp_path / "repo")
    tree = 3000 + 500 + len((root / ".gitignore").read_bytes())
    assert gpu_voices.travelling_bytes(root) == tree + gpu_voices.WHEELS_GUESS
    (root / ".whl").mkdir()
    (root / ".whl" / "a-1.0-py3-none-any.whl").write_bytes(b"w" * 7000)
    assert gpu_voices.travelling_bytes(root) == tree + 7000  # the wheels, not the guess
    assert gpu_voices.room_mb(root, margin_mb=1.0) == pytest.approx(
        (64 * 2**20 - tree - 7000) / 2**20 - 1.0)
    # an earlier pack inside the checkout, not ignored, is replaced: it does not count
    (root / "pack").mkdir()
    (root / "pack" / "old.ogg").write_bytes(b"p" * 4000)
    assert gpu_voices.travelling_bytes(root) == tree + 7000 + 4000
    assert gpu_voices.travelling_bytes(root, root / "pack") == tree + 7000


def test_a_partner_is_never_shrunk(tmp_path, capsys):
    shipped = REPO / gpu_voices.PARTNER
    have = gpu_voices.partner_layers(shipped)
    assert have >= 2
    with pytest.raises(SystemExit, match=f"--layers {have - 1} is fewer than the {have}"):
        gpu_voices.main(["partner", "--out", str(tmp_path), "--layers", str(have - 1),
                         "--dry-run"])  # fmt: skip
    not_partner = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, not_partner)
    with pytest.raises(SystemExit, match="not a FrameBLSTM one-shot separator"):
        gpu_voices.partner_layers(not_partner)


@pytest.mark.slow
def test_gpu_voices_partner_dry_run_grows_and_trains_the_shipped_partner(tmp_path):
    shipped = REPO / gpu_voices.PARTNER
    have = gpu_voices.partner_layers(shipped)
    stdout, out = dry_run(tmp_path, "partner", 2, "--layers", str(have + 1))
    assert "DRY RUN" in stdout and f"grew {shipped.relative_to(REPO)}" in (
        out / "partner.log").read_text()
    report = json.loads((out / "gpu_voices.json").read_text())
    assert report["layers"] == have + 1 and report["pack_cv_items"] == 2
    from models.loading import HALF_MIN_NUMEL, META_KEY, STATE_KEY, load_model

    start = torch.load(shipped, map_location="cpu", weights_only=True)[META_KEY]["steps"]
    assert report["train"]["steps"] > int(start) and report["train"]["curve"]  # counts go on
    whole = out / "speech-2spk-8k-oneshot-gpu.ckpt"
    whole.write_bytes(b"".join((out / p).read_bytes() for p in report["parts"]))
    ckpt = torch.load(whole, map_location="cpu", weights_only=True)
    meta = ckpt[META_KEY]
    assert meta["layers"] == str(have + 1) and meta["hardware"] == "cpu (dry run)"
    big = [v for v in ckpt[STATE_KEY].values() if v.numel() >= HALF_MIN_NUMEL]
    assert big and all(v.dtype == torch.float16 for v in big)  # the large weights: float16
    assert len(load_model(whole, "cpu").score_model.backbone.rnns) == have + 1

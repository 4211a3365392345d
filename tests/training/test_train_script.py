"""train.py end to end in a subprocess: run dir, checkpoints, TensorBoard, resume, DDP."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.loading import load_model
from tests.training.fixtures import FAST_MODEL, REPO, make_wsj0_layout

TINY_DATA = [
    "datamodule=default",
    "datamodule.train.max_len_s=0.25",
    "datamodule.batch_size=2",
    "datamodule.num_workers=0",
    "datamodule.pin_memory=false",
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "checkpoint.every_n_train_steps=1",
]


def run_train(args, cwd=REPO, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def wsj0(tmp_path_factory):
    return make_wsj0_layout(tmp_path_factory.mktemp("data") / "wsj0_mix")


def data_args(root):
    return [f"datamodule.train.root={root}", *TINY_DATA]


@pytest.mark.slow
def test_train_script_end_to_end(tmp_path, wsj0):
    """Tiny NCSN++ (model/score_model=tiny): two steps, validation, test=true, then resume."""
    exp = tmp_path / "exp"
    args = [*data_args(wsj0), "model/score_model=tiny", "model.sampler.N=2",
            "model.sampler.corrector=none",
            "model.valid_max_sep_batches=1", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1"]
    proc = run_train([*args, "trainer.max_steps=2", "trainer.limit_train_batches=2", "test=true",
                      f"paths.exp_dir={exp}"])
    assert "test/si_sdr" in proc.stdout
    runs = list((exp / "default").iterdir())
    assert len(runs) == 1
    run = runs[0]
    # Run dir named after the overrides that matter; excluded keys stay out of the name.
    # the group override model/score_model=tiny is named in the one run folder
    assert "model.score_model-tiny" in run.name and "paths.exp_dir" not in run.name
    assert "trainer.max_steps" not in run.name and "test-true" not in run.name
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and not any(n.startswith("last-v") for n in ckpts)
    assert any(n.startswith("epoch-000_si_sdr-") for n in ckpts), ckpts
    assert list(run.glob("events.out.tfevents.*"))
    model = load_model(run / "checkpoints" / "last.ckpt")
    assert model.exp_name == "default" and model.config.model.sampler.N == 2
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2

    # Resume for two more steps: continues from step 2 in the same run folder.
    run_train([*args, f"paths.exp_dir={tmp_path / 'exp2'}", "trainer.max_steps=4",
               f"resume_from_checkpoint={run / 'checkpoints' / 'last.ckpt'}"])
    assert not (tmp_path / "exp2").exists()
    ckpt2 = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt2["global_step"] == 4
    assert ckpt2["ema"]["num_updates"] == 4


def _hashes(folder):
    return [line.split() for line in (folder / "steps.txt").read_text().splitlines()]


@pytest.mark.slow
def test_resume_continues_the_run_step_for_step(tmp_path, wsj0):
    """Two epochs straight, against one epoch then a resume: the same weights after every
    step, the same folder, and the first run's best checkpoints still known."""
    args = [*data_args(wsj0), *FAST_MODEL, "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1", "model.valid_max_sep_batches=1",
            "checkpoint.every_n_train_steps=100", "checkpoint.save_top_k=5",
            "+callbacks.hash._target_=tests.training.fixtures.StepHashes"]
    straight = tmp_path / "straight"
    run_train([*args, "trainer.max_epochs=2", f"hydra.run.dir={straight}",
               f"+callbacks.hash.out_dir={straight}"])
    split = tmp_path / "split"
    run_train([*args, "trainer.max_epochs=1", f"hydra.run.dir={split}",
               f"+callbacks.hash.out_dir={split}"])
    first_best = {p.name for p in (split / "checkpoints").glob("epoch-*.ckpt")}
    run_train([*args, "trainer.max_epochs=2", f"paths.exp_dir={tmp_path / 'other'}",
               f"resume_from_checkpoint={split / 'checkpoints' / 'last.ckpt'}",
               f"+callbacks.hash.out_dir={split}"])
    assert not (tmp_path / "other").exists()  # no new run folder
    assert _hashes(split) == _hashes(straight)
    assert [int(s) for s, _ in _hashes(split)] == [1, 2, 3, 4, 5, 6]
    last = torch.load(split / "checkpoints" / "last.ckpt", weights_only=True)
    best = next(v for k, v in last["callbacks"].items() if k.startswith("AtomicModelCheckpoint"))
    kept = {os.path.basename(p) for p in best["best_k_models"]}
    assert first_best and first_best <= kept and len(kept) == 2


def repo_run_dirs():
    """Run dirs Hydra could have created in the repo (default patterns)."""
    return {str(p) for pattern in ("outputs/*", "exp/default/*") for p in REPO.glob(pattern)}


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, wsj0):
    """Two gloo ranks train in step and share one Hydra run dir."""
    hashes = tmp_path / "hashes"
    run = tmp_path / "run"
    args = [*data_args(wsj0), *FAST_MODEL, "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.strategy=ddp", "trainer.max_steps=3", "trainer.limit_val_batches=1",
            f"hydra.run.dir={run}",
            "+callbacks.hash._target_=tests.training.fixtures.WeightsHash",
            f"+callbacks.hash.out_dir={hashes}",
            "+callbacks.draw._target_=tests.training.fixtures.RankDraw",
            f"+callbacks.draw.out_dir={tmp_path / 'draws'}"]
    before = repo_run_dirs()
    run_train(args, timeout=600)
    files = sorted(hashes.iterdir())
    assert [f.name.split("_")[0] for f in files] == ["rank0", "rank1"]
    values = [f.read_text().split() for f in files]
    assert values[0] == values[1] and values[0][1] == "3"
    # Rank 1 is started with rank 0's hydra.run.dir: no second run dir anywhere.
    # ... from the same initial weights, yet each rank draws its own times and noises
    draws = [(tmp_path / "draws" / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert draws[0] != draws[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["draws", "hashes", "run"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / ".hydra").is_dir()
    assert repo_run_dirs() == before


def test_run_folder_of_list_overrides_can_be_passed_back_unquoted(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from train import resumed_run_dir

    name = "2026_datamodule.train.speed-[0.85,1.15]_model/score_model-tiny_x-{a: 1}"
    run = resumed_run_dir(None, str(tmp_path), name)
    assert run == f"{tmp_path}/2026_datamodule.train.speed-0.85_1.15_model.score_model-tiny_x-a:1"
    ckpt = f"{run}/checkpoints/last.ckpt"
    parsed = OverridesParser.create().parse_overrides([f"resume_from_checkpoint={ckpt}"])
    assert parsed[0].value() == ckpt
    assert resumed_run_dir(ckpt, "ignored", "ignored") == str(Path(run).resolve())

"""bench/gpu_smoke.py keeps working without a GPU: its dry run, end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_smoke_dry_run(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "bench/gpu_smoke.py", "--dry-run", "--out",
                           str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert report["dry_run"] is True and report["steps"] == 3
    for run in ("fp32", "bf16"):
        assert report[run]["steps_per_s"] > 0 and report[run]["steps_timed"] == 2
    assert report["bf16"]["precision"] == "bf16-mixed" and report["fp32"]["precision"] == "32-true"
    sep = report["separation_60nfe"]
    assert sep["batch_1"]["nfe"] == 2 * 2 + 1 and sep["batch_8"]["rtf"] > 0
    assert "DRY RUN" in proc.stdout

#!/usr/bin/env bash
# Wheels for the GPU machine lent by this workplace (Python 3.12, no internet there; torch,
# pytorch-lightning, numpy, scipy, matplotlib, tensorboard and tqdm are already installed).
# Run here, in the repository root; then carry `.whl` and start the device command with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:$PWD && python3 bench/gpu_smoke.py --out $OUT/smoke
# pesq has no wheel (sdist only): PESQ is then reported missing, nothing else changes.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PY:-.venv/bin/python}
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl \
    hydra-core==1.3.8 omegaconf==2.3.1 soundfile==0.14.0 soxr==1.1.0 pystoi==0.4.1 \
    espeakng-loader==0.2.4
# pure-Python, published as a source archive only: built into a wheel here
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -l .whl

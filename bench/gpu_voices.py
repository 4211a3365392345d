"""Fine-tune the shipped speech model on a lent GPU, in one call of its 15 minutes.

The recorded-voice corpus is 3 GB here and cannot travel to the GPU machine (its
working tree is limited to 64 MiB and it reaches no network), so a byte-budgeted
sample of it travels instead, as Opus:

    # here, once: tr items in a seeded order until the budget, and the first cv items
    python bench/gpu_voices.py pack --root data/voices --out .carry/voices --max-mb 12
    bash bench/device_wheels.sh && rm .whl/espeakng_loader-*.whl  # 10 MiB not needed
    # there, carrying .carry and .whl (43 MiB of tracked files + 12 + 2 < 64 MiB):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
      export PYTHONPATH=/tmp/site:$PWD &&
      python3 bench/gpu_voices.py train --pack .carry/voices --out $OUT --minutes 8
    # here, without a GPU: the same steps with tiny sizes (the test suite runs it)
    python bench/gpu_voices.py train --pack P --out O --dry-run

12 MiB of Opus (about 21 kbit/s, waveform SNR about 17 dB against the wav) hold 504 of
the 8 000 tr mixtures (75 minutes of sources, a third of the corpus's distinct audio)
and the first 40 cv mixtures.

`train` unpacks the pack into a WSJ0-2mix layout (mixtures recomputed as the sum of
the decoded sources), fine-tunes `--init` (default the shipped model) with the
`experiment=voices` recipe and its augmentations for `--minutes`, bigger batches on
the GPU, validating on the packed cv mixtures, and exports the best checkpoint by
validation as a shipped-format file (EMA weights, `python -m models.pretrained`). The
file comes back in pieces of at most 15 MiB (the machine returns files of at most
16 MiB): `cat <name>.part* > <name>`. It prints and writes (`gpu_voices.json`) the
steps, steps per second, peak memory and the best checkpoint (its name holds its
validation SI-SDR). The cv and tt choice and measurement are then made here, on the
whole splits (`evaluate.py`, `bench/bench_pretrained.py`), as for every shipped model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gpu_smoke import run  # a repository command with its log, stopping on failure

REPO = Path(__file__).resolve().parents[1]
LAYOUT = Path("2speakers") / "wav8k" / "min"
FS = 8000
PART_BYTES = 15 * 2**20
PACK_MANIFEST = "pack.json"


# ---- pack (here) ---------------------------------------------------------------------
def encode(path_in: Path, path_out: Path) -> int:
    """One corpus wav -> Ogg Opus; returns the bytes written."""
    import soundfile as sf

    x, fs = sf.read(path_in, dtype="float32")
    if fs != FS:
        raise ValueError(f"{path_in}: {fs} Hz, the pack holds the 8-kHz corpus only")
    path_out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path_out, x, fs, format="OGG", subtype="OPUS")
    return path_out.stat().st_size


def pack(root: Path, out: Path, max_mb: float, n_cv: int, seed: int = 0) -> dict:
    """Opus copies of tr items (seeded order) up to `max_mb` and of the first `n_cv` cv
    items; `pack.json` is written last, so a pack without it is incomplete."""
    from datasets.wsj0_mix import WSJ0Mix

    corpus = Path(root)
    tr = WSJ0Mix(corpus, 2, FS, "min", "tr")
    cv = WSJ0Mix(corpus, 2, FS, "min", "cv")
    if out.exists():
        shutil.rmtree(out)  # never a mix of two packs
    budget, used = max_mb * 2**20, 0
    names = {"cv": [], "tr": []}
    for i in range(min(n_cv, len(cv))):
        for k, path in enumerate(cv.paths(i)[1:]):
            used += encode(path, out / "cv" / f"s{k + 1}" / f"{cv.names[i]}.ogg")
        names["cv"].append(cv.names[i])
    order = np.random.default_rng(seed).permutation(len(tr))
    for i in order:
        sizes = [encode(path, out / "tr" / f"s{k + 1}" / f"{tr.names[i]}.ogg")
                 for k, path in enumerate(tr.paths(i)[1:])]  # fmt: skip
        if used + sum(sizes) > budget:
            for k in range(2):
                (out / "tr" / f"s{k + 1}" / f"{tr.names[i]}.ogg").unlink()
            break
        used += sum(sizes)
        names["tr"].append(tr.names[i])
    if not names["tr"]:
        raise SystemExit(f"gpu_voices pack: --max-mb {max_mb} holds no tr item")
    manifest = {"source": str(corpus), "fs": FS, "codec": "OGG/OPUS", "bytes": used,
                "seed": seed, "n_tr_corpus": len(tr), "names": names}  # fmt: skip
    tmp = out / (PACK_MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(out / PACK_MANIFEST)
    return manifest


# ---- unpack and train (there) --------------------------------------------------------
def unpack(pack_dir: Path, dest: Path) -> dict:
    """A packed sample -> `dest/2speakers/wav8k/min/{tr,cv}/{mix,s1,s2}/*.wav`."""
    import soundfile as sf

    from datasets.synth.wavio import write_wav

    manifest_path = pack_dir / PACK_MANIFEST
    if not manifest_path.is_file():
        raise SystemExit(f"gpu_voices: {manifest_path} is missing: the pack is incomplete; "
                         "rerun 'python bench/gpu_voices.py pack ...'")  # fmt: skip
    manifest = json.loads(manifest_path.read_text())
    for split, names in manifest["names"].items():
        base = dest / LAYOUT / split
        for name in names:
            srcs = [sf.read(pack_dir / split / f"s{k + 1}" / f"{name}.ogg", dtype="float32")[0]
                    for k in range(2)]  # fmt: skip
            n = min(len(x) for x in srcs)
            srcs = [x[:n] for x in srcs]
            for sub, x in (("s1", srcs[0]), ("s2", srcs[1]), ("mix", srcs[0] + srcs[1])):
                write_wav(base / sub / f"{name}.wav", x, FS)
    return manifest


def split_file(path: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """`path` -> `path.part0`, `path.part1`, ... of at most `part_bytes` (path removed)."""
    parts = []
    with open(path, "rb") as f:
        while chunk := f.read(part_bytes):
            part = path.with_name(f"{path.name}.part{len(parts)}")
            part.write_bytes(chunk)
            parts.append(part)
    path.unlink()
    return parts


def train(args) -> dict:
    dry = args.dry_run
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_voices_")).resolve()
    import torch

    from demo import best_checkpoint

    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_voices: no GPU visible; use --dry-run to check the script on a CPU")
    t0 = time.time()
    corpus = work / "voices"
    manifest = unpack(args.pack, corpus)
    run_dir = work / "run"
    seconds = 15 if dry else int(args.minutes * 60)
    cmd = [sys.executable, "train.py", "experiment=voices", f"init_from={args.init}",
           f"datamodule.train.corpus.root={corpus}", "datamodule.test=null",
           f"datamodule.train.speed=[{args.speed[0]},{args.speed[1]}]",
           f"datamodule.train.eq_db={args.eq_db}", f"datamodule.train.reverb_p={args.reverb_p}",
           f"model.optimizer.lr={args.lr}", f"trainer.max_time=00:00:00:{seconds}",
           f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
           "+callbacks.stats._target_=training.callbacks.StepStats",
           f"+callbacks.stats.path={run_dir / 'stats.json'}",
           f"+callbacks.stats.skip={1 if dry else 10}"]  # fmt: skip
    if dry:
        cmd += ["trainer=cpu", "num_threads=1", "datamodule.num_workers=0",
                "datamodule.batch_size=2", "datamodule.train.corpus.max_len_s=0.5",
                "trainer.max_steps=3", "trainer.limit_train_batches=2",
                "trainer.limit_val_batches=1", "datamodule.val_batch_size=1",
                "datamodule.val.max_len_s=0.5", "checkpoint.every_n_train_steps=1",
                "model.sampler.N=2"]  # fmt: skip
    else:
        cmd += ["trainer=default", f"datamodule.batch_size={args.batch}",
                f"datamodule.num_workers={args.workers}", "datamodule.persistent_workers=true",
                f"trainer.limit_train_batches={args.val_every}",
                "checkpoint.every_n_train_steps=1000000"]  # fmt: skip
    run(cmd, out / "train.log")
    stats = json.loads((run_dir / "stats.json").read_text())
    ckpt = best_checkpoint(run_dir / "checkpoints")  # its name holds its val/si_sdr
    shipped = out / f"{args.name}.ckpt"
    meta = [f"hardware={'cpu (dry run)' if dry else torch.cuda.get_device_name(0)}",
            f"minutes={args.minutes}", f"init_from={args.init}",
            f"pack_tr_items={len(manifest['names']['tr'])}"]  # fmt: skip
    run([sys.executable, "-m", "models.pretrained", ckpt, shipped, "--sampler", "N=8",
         "final_step=false", "--meta", *meta], out / "export.log")  # fmt: skip
    parts = split_file(shipped)
    report = {"dry_run": dry, "device": "cpu" if dry else torch.cuda.get_device_name(0),
              "pack_tr_items": len(manifest["names"]["tr"]),
              "pack_cv_items": len(manifest["names"]["cv"]), "train": stats,
              "best_checkpoint": ckpt.name,
              "parts": [p.name for p in parts], "total_s": round(time.time() - t0, 1)}  # fmt: skip
    (out / "gpu_voices.json").write_text(json.dumps(report, indent=1) + "\n")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    sps = stats.get("steps_per_s")
    print(f"== gpu_voices ({report['device']}{', DRY RUN' if dry else ''}) ==")
    print(f"pack: {report['pack_tr_items']} tr and {report['pack_cv_items']} cv mixtures")
    print(f"steps {stats.get('steps')}, steps/s {sps if sps is None else round(sps, 2)}, "
          f"peak GiB {stats.get('peak_memory_gib')}")
    print(f"best {ckpt.name}; {len(parts)} part(s): "
          f"cat {shipped.name}.part* > {shipped.name}")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: a byte-budgeted Opus sample of the corpus")
    p.add_argument("--root", type=Path, default=Path("data/voices"))
    p.add_argument("--out", type=Path, default=Path(".carry/voices"))
    p.add_argument("--max-mb", type=float, default=12.0)
    p.add_argument("--n-cv", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train", help="there: unpack, fine-tune, export")
    t.add_argument("--pack", type=Path, default=Path(".carry/voices"))
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--work", type=Path, default=None,
                   help="unpacked corpus and run (default: a temporary folder)")
    t.add_argument("--keep-work", action="store_true")
    t.add_argument("--init", default="speech-2spk-8k")
    t.add_argument("--name", default="speech-2spk-8k-gpu")
    t.add_argument("--minutes", type=float, default=8.0)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--workers", type=int, default=12)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--speed", type=float, nargs=2, default=(0.8, 1.25))
    t.add_argument("--eq-db", type=float, default=8.0)
    t.add_argument("--reverb-p", type=float, default=0.0)
    t.add_argument("--val-every", type=int, default=500, help="training steps per validation")
    t.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: test the script")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    if args.cmd == "pack":
        m = pack(args.root, args.out, args.max_mb, args.n_cv, args.seed)
        print(f"packed {len(m['names']['tr'])} tr and {len(m['names']['cv'])} cv mixtures "
              f"({m['bytes'] / 2**20:.1f} MiB) into {args.out}")
    else:
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

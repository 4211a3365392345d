"""Train the shipped speech models further on a lent GPU, in one call of its 15 minutes.

The recorded-voice corpus is 3 GB here and cannot travel to the GPU machine (its
working tree is limited to 64 MiB and it reaches no network), so a byte-budgeted
sample of it travels instead, as Opus:

    # here, once: the wheels, then tr items in a seeded order until the room left, and
    # the first cv items
    bash bench/device_wheels.sh && rm .whl/espeakng_loader-*.whl  # 10 MiB not needed
    python bench/gpu_voices.py pack --root data/voices --out .carry/voices
    # there, carrying .carry and .whl:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
      export PYTHONPATH=/tmp/site:$PWD &&
      python3 bench/gpu_voices.py partner --pack .carry/voices --out $OUT --minutes 8
    # here, without a GPU: the same steps with tiny sizes (the test suite runs them)
    python bench/gpu_voices.py partner --pack P --out O --dry-run

Everything that travels counts against those 64 MiB: the tracked files (the shipped
models among them), the wheels and the pack. `pack` therefore fills the room the other
two leave, less 1 MiB, unless `--max-mb` says otherwise. 12 MiB of Opus (about 21
kbit/s, waveform SNR about 17 dB against the wav) hold 504 of the 8 000 tr mixtures (75
minutes of sources, a third of the corpus's distinct audio) and the first 40 cv
mixtures.

Both commands unpack the pack into a WSJ0-2mix layout (mixtures recomputed as the sum
of the decoded sources) and train on it for `--minutes`, with bigger batches than on
the CPU:

- `partner` trains the one-shot partner (`--init`, default the shipped
  `pretrained/speech-2spk-8k-oneshot.ckpt`) further, with
  `bench/bench_discriminative_baseline.py --device cuda`: the recipe and augmentations
  of its last CPU sittings on 4-s crops, Adam afresh, the learning rate annealed over
  the last `--anneal` minutes; `--layers N` first grows it deeper (`--grow-from`). Its
  last state comes back in the shipped format, in float16.
- `train` fine-tunes the diffusion model (`--init`, default the shipped model) with
  the `experiment=voices` recipe and its augmentations, validating on the packed cv
  mixtures, and exports the best checkpoint by validation (EMA weights).

The file (`python -m models.pretrained`) comes back in pieces of at most 15 MiB (the
machine returns files of at most 16 MiB): `cat <name>.part* > <name>`. It prints and
writes (`gpu_voices.json`) the steps, steps per second and the validation curve or
best checkpoint. The cv and tt choice and measurement are then made here, on the
whole splits (`bench/bench_pretrained.py`, `evaluate.py`), as for every shipped model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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
TREE_LIMIT = 64 * 2**20  # what travels to the device machine, carried paths included
WHEELS_GUESS = 3 * 2**20  # bench/device_wheels.sh without espeak-ng, before it has run
PARTNER = Path("pretrained") / "speech-2spk-8k-oneshot.ckpt"


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


def travelling_bytes(repo: Path = REPO, pack_dir: Path | None = None) -> int:
    """What goes to the device machine besides the pack: the files git tracks and the
    untracked ones it does not ignore (their sizes here), and the carried wheels in
    `.whl` (WHEELS_GUESS while there are none)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=repo, capture_output=True,
                             check=True).stdout  # fmt: skip
    pack_dir = None if pack_dir is None else Path(pack_dir).resolve()
    total = 0
    for name in filter(None, listing.decode().split("\0")):
        path = repo / name
        if path.is_file() and (pack_dir is None or pack_dir not in path.resolve().parents):
            total += path.stat().st_size
    wheels = list((repo / ".whl").glob("*.whl"))
    return total + (sum(w.stat().st_size for w in wheels) if wheels else WHEELS_GUESS)


def room_mb(repo: Path = REPO, pack_dir: Path | None = None, margin_mb: float = 1.0) -> float:
    """MiB left for the pack under the 64 MiB that travel, less `margin_mb`."""
    return (TREE_LIMIT - travelling_bytes(repo, pack_dir)) / 2**20 - margin_mb


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


def start(args):
    """(out, work folder, unpacked corpus, pack manifest, device name) of a `train` or
    `partner` run; refuses a real run without a GPU."""
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_voices: no GPU visible; use --dry-run to check the script on a CPU")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_voices_")).resolve()
    corpus = work / "voices"
    manifest = unpack(args.pack, corpus)
    device = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name(0)
    return out, work, corpus, manifest, device


def finish(args, out: Path, work: Path, shipped: Path, report: dict, t0: float) -> dict:
    """Split the exported file, write and print the report, tidy the work folder."""
    parts = split_file(shipped)
    report = {**report, "parts": [p.name for p in parts], "total_s": round(time.time() - t0, 1)}
    (out / "gpu_voices.json").write_text(json.dumps(report, indent=1) + "\n")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    stats = report["train"]
    sps = stats.get("steps_per_s")
    print(f"== gpu_voices {args.cmd} ({report['device']}{', DRY RUN' if args.dry_run else ''}) ==")
    print(f"pack: {report['pack_tr_items']} tr and {report['pack_cv_items']} cv mixtures")
    peak = stats.get("peak_memory_gib")
    print(f"steps {stats.get('steps')}, steps/s {sps if sps is None else round(sps, 2)}"
          + ("" if peak is None else f", peak GiB {peak}"))
    print(f"{report['result']}; {len(parts)} part(s): cat {shipped.name}.part* > {shipped.name}")
    return report


def train(args) -> dict:
    """Fine-tune the diffusion model (train.py experiment=voices) on the unpacked pack."""
    t0 = time.time()
    dry = args.dry_run
    out, work, corpus, manifest, device = start(args)
    from demo import best_checkpoint

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
    meta = [f"hardware={device}", f"minutes={args.minutes}", f"init_from={args.init}",
            f"pack_tr_items={len(manifest['names']['tr'])}"]  # fmt: skip
    run([sys.executable, "-m", "models.pretrained", ckpt, shipped, "--sampler", "N=8",
         "final_step=false", "--meta", *meta], out / "export.log")  # fmt: skip
    report = {"dry_run": dry, "device": device,
              "pack_tr_items": len(manifest["names"]["tr"]),
              "pack_cv_items": len(manifest["names"]["cv"]), "train": stats,
              "best_checkpoint": ckpt.name, "result": f"best {ckpt.name}"}  # fmt: skip
    return finish(args, out, work, shipped, report, t0)


def partner_layers(path: Path) -> int:
    """The number of BLSTM layers of the one-shot partner saved at `path`."""
    import torch

    from models.loading import CONFIG_KEY

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return int(ckpt[CONFIG_KEY]["model"]["score_model"]["backbone"]["n_layers"])
    except (KeyError, TypeError):
        raise SystemExit(f"gpu_voices partner: {path} is not a FrameBLSTM one-shot separator "
                         "in the shipped format (pretrained/speech-2spk-8k-oneshot.ckpt is "
                         "one)") from None


def partner(args) -> dict:
    """Train the one-shot partner further (bench_discriminative_baseline.py) on the
    unpacked pack, on the GPU, and export its last state in float16."""
    t0 = time.time()
    dry = args.dry_run
    init = Path(args.init)
    if not init.is_file():
        raise SystemExit(f"gpu_voices partner: --init {init}: no such file")
    have = partner_layers(init)
    layers = args.layers or have
    if layers < have:
        raise SystemExit(f"gpu_voices partner: --layers {layers} is fewer than the "
                         f"{have} of {init}; a network only grows")
    out, work, corpus, manifest, device = start(args)
    saved, curve = work / "partner.pt", work / "curve.json"
    minutes = 0.1 if dry else args.minutes
    cmd = [sys.executable, "bench/bench_discriminative_baseline.py", "--experiment", "voices",
           "--device", "cpu" if dry else "cuda", "--minutes", str(minutes),
           "--anneal", str(min(args.anneal, minutes) if not dry else 0.0),
           "--val-every", str(2 if dry else args.val_every),
           "--grow-from" if layers > have else "--resume", str(init),
           "--save", str(saved), "--save-every", "2", "--out", str(curve),
           "--", f"datamodule.train.corpus.root={corpus}", "datamodule.test=null",
           f"datamodule.train.speed=[{args.speed[0]},{args.speed[1]}]",
           f"datamodule.train.eq_db={args.eq_db}", f"datamodule.train.reverb_p={args.reverb_p}",
           "datamodule.train.extra_p=0", f"model.optimizer.lr={args.lr}",
           f"model.score_model.backbone.n_layers={layers}"]  # fmt: skip
    if dry:
        cmd[2:2] = ["--threads", "1"]
        cmd += ["datamodule.num_workers=0", "datamodule.batch_size=2",
                "datamodule.train.corpus.max_len_s=0.5", "datamodule.val_batch_size=1",
                "datamodule.val.max_len_s=0.5", "model.valid_max_sep_batches=1"]  # fmt: skip
    else:
        cmd += [f"datamodule.batch_size={args.batch}", f"datamodule.num_workers={args.workers}",
                "datamodule.persistent_workers=true",
                f"datamodule.train.corpus.max_len_s={args.crop_s}"]  # fmt: skip
    run(cmd, out / "partner.log")
    stats = json.loads(curve.read_text())
    shipped = out / f"{args.name}.ckpt"
    meta = ["kind=one-shot separator, the partner of speech-2spk-8k (gpu_voices.py partner)",
            f"hardware={device}", f"steps={stats['steps']}",
            f"hours={stats['minutes'] / 60:.2f}", f"layers={layers}", f"init_from={init}",
            f"pack_tr_items={len(manifest['names']['tr'])}"]  # fmt: skip
    run([sys.executable, "-m", "models.pretrained", saved, shipped, "--half", "--meta", *meta],
        out / "export.log")
    last = stats["curve"][-1] if stats["curve"] else {}
    report = {"dry_run": dry, "device": device,
              "pack_tr_items": len(manifest["names"]["tr"]),
              "pack_cv_items": len(manifest["names"]["cv"]), "layers": layers,
              "train": {"steps": stats["steps"], "steps_per_s": stats["steps_per_s"],
                        "curve": stats["curve"]},
              "result": f"last val SI-SDRi {last.get('si_sdri', float('nan')):.2f} dB"}  # fmt: skip
    return finish(args, out, work, shipped, report, t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: a byte-budgeted Opus sample of the corpus")
    p.add_argument("--root", type=Path, default=Path("data/voices"))
    p.add_argument("--out", type=Path, default=Path(".carry/voices"))
    p.add_argument("--max-mb", type=float, default=None,
                   help="the pack's size (default: the room left under the 64 MiB that "
                        "travel, less 1 MiB)")
    p.add_argument("--n-cv", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)

    def common(name, help, init, out_name, lr, reverb_p, speed, val_every):
        t = sub.add_parser(name, help=help)
        t.add_argument("--pack", type=Path, default=Path(".carry/voices"))
        t.add_argument("--out", type=Path, required=True)
        t.add_argument("--work", type=Path, default=None,
                       help="unpacked corpus and run (default: a temporary folder)")
        t.add_argument("--keep-work", action="store_true")
        t.add_argument("--init", default=init)
        t.add_argument("--name", default=out_name)
        t.add_argument("--minutes", type=float, default=8.0)
        t.add_argument("--batch", type=int, default=32)
        t.add_argument("--workers", type=int, default=12)
        t.add_argument("--lr", type=float, default=lr)
        t.add_argument("--speed", type=float, nargs=2, default=speed)
        t.add_argument("--eq-db", type=float, default=8.0)
        t.add_argument("--reverb-p", type=float, default=reverb_p)
        t.add_argument("--val-every", type=int, default=val_every,
                       help="training steps per validation")
        t.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: test the script")
        return t

    common("train", "there: unpack, fine-tune the diffusion model, export", "speech-2spk-8k",
           "speech-2spk-8k-gpu", 3e-4, 0.0, (0.8, 1.25), 500)
    t = common("partner", "there: unpack, train the one-shot partner further, export",
               str(PARTNER), "speech-2spk-8k-oneshot-gpu", 3e-4, 0.25, (0.75, 1.33), 200)
    t.add_argument("--anneal", type=float, default=4.0, metavar="MIN",
                   help="lower the learning rate over the last MIN minutes")
    t.add_argument("--layers", type=int, default=None,
                   help="grow the partner to this many BLSTM layers first")
    t.add_argument("--crop-s", type=float, default=4.0, help="training crops, seconds")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    if args.cmd == "pack":
        max_mb = room_mb(REPO, args.out) if args.max_mb is None else args.max_mb
        if max_mb <= 0:
            raise SystemExit(f"gpu_voices pack: no room for a pack: the tracked files and the "
                             f"wheels already take {travelling_bytes(REPO, args.out) / 2**20:.1f}"
                             f" of the {TREE_LIMIT // 2**20} MiB that travel")
        m = pack(args.root, args.out, max_mb, args.n_cv, args.seed)
        print(f"packed {len(m['names']['tr'])} tr and {len(m['names']['cv'])} cv mixtures "
              f"({m['bytes'] / 2**20:.1f} MiB of {max_mb:.1f}) into {args.out}")
    else:
        (train if args.cmd == "train" else partner)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

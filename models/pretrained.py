"""Models shipped in `pretrained/`: names, paths, and the export of a training checkpoint.

A shipped file holds only what inference needs: the run's config (`diffsep_config`),
the EMA weights as the model's `state_dict` (no optimizer, no second copy of the
weights) and a `pretrained` entry describing the training run. It loads with
`torch.load(..., weights_only=True)` like every checkpoint of this project.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from models.loading import (
    CONFIG_KEY,
    META_KEY,
    model_from_checkpoint,
    read_checkpoint,
    write_inference_file,
)

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
PRETRAINED = {
    "speech-2spk-8k": "two speakers, 8 kHz, recorded-voice corpus "
    "(docs/model-card-speech-2spk-8k.md)",
    "music-4stem-11k": "drums, bass, other, vocals at 11.025 kHz, rendered multitrack corpus "
    "(docs/model-card-music-4stem-11k.md)",
}
ALIASES = {"speech": "speech-2spk-8k", "music": "music-4stem-11k"}
DEFAULT_MODEL = "speech-2spk-8k"
# Shipped one-shot separators that a shipped model blends its estimate with
# (models/blend.py): model name -> (file name in pretrained/, share of the DiffSep
# estimate, the speed factors of the views it averages: models.blend.speed_views, the
# keyword arguments of the Wiener post-filter of its estimate: models/postfilter.py, or
# None). Not models of their own: they separate only as a model's partner (or with
# --one-shot).
PARTNERS = {"speech-2spk-8k": ("speech-2spk-8k-oneshot", 0.05, (1.0, 0.9, 1.1),
                               {"n_fft": 1024, "power": 2.0, "weight": 0.7})}


def pretrained_path(name: str) -> Path:
    return PRETRAINED_DIR / f"{name}.ckpt"


def resolve_model(spec: str | Path | None) -> Path:
    """A checkpoint path from a path, a shipped model's name or alias, or None (the default)."""
    spec = DEFAULT_MODEL if spec is None else ALIASES.get(str(spec), spec)
    if str(spec) in PRETRAINED:
        path = pretrained_path(str(spec))
        if not path.is_file():
            raise FileNotFoundError(
                f"the shipped model {spec!r} is missing: {path} (a partial clone? "
                "'git lfs' is not used: the file is a plain tracked file); pass a "
                "checkpoint of your own with --model")
        return path
    path = Path(spec)
    if not path.is_file():
        names = ", ".join([*PRETRAINED, *ALIASES])
        raise FileNotFoundError(f"checkpoint not found: {path} (shipped models: {names})")
    return path


def partner_for(ckpt_path):
    """The :class:`models.blend.Partner` of a shipped model's file, None for any other
    file (a checkpoint of one's own, or a shipped model without a partner)."""
    path = Path(ckpt_path).resolve()
    for name, (partner, weight, views, postfilter) in PARTNERS.items():
        if path == pretrained_path(name).resolve():
            from models.blend import Partner
            from models.postfilter import WienerFilter

            source = pretrained_path(partner)
            if not source.is_file():
                raise FileNotFoundError(
                    f"the shipped model {name!r} blends its estimate with {source}, which is "
                    "missing (a partial clone?); pass --no-blend to use the model alone")
            return Partner(model_from_checkpoint(read_checkpoint(source), source), weight,
                           source, views, postfilter and WienerFilter(**postfilter))
    return None


def one_shot_for(ckpt_path, config=None):
    """The one-shot separator of a shipped model's file on its own
    (:class:`models.blend.OneShot`, ``--one-shot``; it runs on the device of the mixtures
    it is given). ``config``: the run config it carries (the evaluation scripts give the
    shipped model's, whose datasets they score). Raises ValueError for a file that has
    none."""
    partner = partner_for(ckpt_path)
    if partner is None:
        names = ", ".join(PARTNERS)
        raise ValueError(f"{ckpt_path} has no one-shot separator: --one-shot works with the "
                         f"shipped models that have one ({names})")
    from models.blend import OneShot

    return OneShot(partner, config)


def export(ckpt_path, out_path, meta: dict | None = None, sampler: dict | None = None,
           average: list | None = None, half: bool = False) -> Path:
    """Write the inference-only file of a training checkpoint (EMA weights).

    `sampler` overrides keys of the stored `model.sampler` (the defaults that
    `separate.py` and `evaluate.py` use), e.g. `{"N": 8, "final_step": True}`.
    `average` lists more checkpoints of the same network (e.g. fine-tuned from one
    start): the file then holds the uniform mean of all their EMA weights, a "model
    soup" (Wortsman et al., ICML 2022), with the first checkpoint's config. ``half``
    stores the large weights as float16 (``write_inference_file``). A file already in
    the inference format (a shipped model, a separator saved by
    ``bench_discriminative_baseline.py``) keeps the facts stored with it; `meta` adds to
    them or replaces them.
    """
    ckpt = read_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, ckpt_path)  # before the sampler update below
    config = ckpt[CONFIG_KEY]
    sources = [Path(ckpt_path)] + [Path(p) for p in average or []]
    if len(sources) > 1:
        average_weights(model, sources[1:])
    if sampler:
        unknown = set(sampler) - set(config["model"]["sampler"])
        if unknown:
            raise ValueError(f"unknown sampler keys {sorted(unknown)}")
        config["model"]["sampler"].update(sampler)
    names = ", ".join(p.name for p in sources)
    if META_KEY in ckpt:  # a shipped file exported again (say --half): its facts stay
        info = dict(ckpt[META_KEY])
        if len(sources) > 1:
            info["source_checkpoint"] = names
    else:
        info = {"global_step": int(ckpt.get("global_step", -1)),
                "epoch": int(ckpt.get("epoch", -1)), "source_checkpoint": names}  # fmt: skip
    info.update(meta or {})
    return write_inference_file(config, model, info, out_path, half=half)


def average_weights(model, others) -> None:
    """Replace `model`'s floating-point weights by their mean with those of the
    checkpoints `others` (EMA weights where present); every tensor must match."""
    state = model.state_dict()
    total = {k: v.detach().clone().double() for k, v in state.items() if v.is_floating_point()}
    for path in others:
        differs = ValueError(f"{path}: its network differs from the first checkpoint's; "
                             "only checkpoints of one network can be averaged")
        try:
            other = model_from_checkpoint(read_checkpoint(path), path).state_dict()
        except RuntimeError as exc:  # load_state_dict: missing keys or other shapes
            raise differs from exc
        if other.keys() != state.keys() or any(
                other[k].shape != state[k].shape for k in state):  # fmt: skip
            raise differs
        for k in total:
            total[k] += other[k].double()
    n = len(others) + 1
    model.load_state_dict({**state, **{k: (v / n).to(state[k].dtype) for k, v in total.items()}})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.pretrained",
                                description="Export a training checkpoint for shipping.")
    p.add_argument("checkpoint", type=Path, nargs="+",
                   help="one checkpoint, or several of one network: their weights are averaged")
    p.add_argument("output", type=Path)
    p.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE",
                   help="facts about the run stored in the file (hardware, hours, ...)")
    p.add_argument("--sampler", nargs="*", default=[], metavar="KEY=VALUE",
                   help="default sampler settings of the shipped model, e.g. N=8 final_step=true")
    p.add_argument("--half", action="store_true",
                   help="store the large weights as float16 (half the file; check the scores)")
    args = p.parse_args(argv)
    meta = dict(kv.split("=", 1) for kv in args.meta)
    sampler = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.sampler)}
    first, *rest = args.checkpoint
    out = export(first, args.output, meta, sampler, average=rest, half=args.half)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

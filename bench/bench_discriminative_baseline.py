"""What the demo's network learns in the same wall time as a plain separator.

    python bench/bench_discriminative_baseline.py [--minutes 20] [--threads 1]
        [--val-every 150] [--loss si-sdr|mse|mse-power] [--save FILE [--save-every 10]]
        [--resume FILE | --grow-from FILE] [--anneal MIN [--anneal-floor 0.02]]
        [--device cuda] [-- extra Hydra overrides]

A yardstick for the learning run of ``bench/bench_train_demo.py``: the network,
data, crops, batch size, optimiser and gradient clipping of ``experiment=demo``,
trained for the same wall time as a discriminative separator instead of a score
model. It gets what the sampler starts from at t = T (the prior mean ``y / K``
for every source) and the mixture, its output is added to ``y / K``, and the loss
is the negative permutation-invariant SI-SDR of that estimate (``--loss mse``: the
squared error of the best source order, the kind of loss score matching is;
``mse-power``: against the sources loudest first). Validation scores
the same excerpts as the demo's ``val/si_sdri`` (first 2 s of the first 8
validation mixtures) every ``--val-every`` steps, so the two curves compare step
for step. No diffusion, no sampler: it measures how much separation this network
can learn from this data in this time, the ceiling of the diffusion model's
one-shot separation at t = T.

Long runs: ``--save FILE`` writes the separator every ``--save-every`` minutes and at
the end (atomically), with its training state (Adam's moments, steps, minutes, curve)
beside it in ``FILE.state.pt``; ``--resume FILE`` continues such a run for another
``--minutes`` with the same experiment and overrides, counting steps and minutes from
where it stopped (a file without its state continues with a fresh optimiser).
The learning rate is the experiment's, constant; ``--anneal MIN`` lowers it along a
half cosine to ``--anneal-floor`` times itself over the last MIN minutes of the sitting
(a later sitting starts again from the experiment's rate). ``--grow-from FILE`` starts
a deeper network (the experiment's, given more BLSTM layers by an override such as
``model.score_model.backbone.n_layers=3``) from the separator in FILE: the new layers
start as the identity, so it separates as FILE's did and training adds capacity without
starting over; later sittings ``--resume`` the file it saves. ``--device cuda`` trains
on a GPU (``bench/gpu_voices.py partner`` runs it there, with bigger batches).
"""

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from metrics.separation import pit_si_sdr, si_sdr
from models.blend import estimate, one_shot
from models.diffsep import normalize
from models.loading import (
    CONFIG_KEY,
    META_KEY,
    MODEL_TARGETS,
    check_targets,
    model_from_checkpoint,
    write_inference_file,
)

REPO = Path(__file__).resolve().parents[1]


def demo_config(overrides=(), experiment="demo"):
    with initialize_config_dir(config_dir=str(REPO / "config"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])


def save_one_shot(path, model, cfg, meta=None):
    """The trained separator in the project's inference-file format (models/loading.py):
    loadable with ``weights_only=True``, by :func:`load_one_shot`, and as the starting
    point of a diffusion model of the same network (``train.py init_from=PATH``)."""
    info = {"kind": "discriminative one-shot separator (bench_discriminative_baseline.py)"}
    cfg = cfg.copy()
    with open_dict(cfg):  # outside a Hydra run paths.output_dir cannot resolve
        cfg.paths.output_dir = str(Path(path).parent)
    write_inference_file(OmegaConf.to_container(cfg, resolve=True), model,
                         {**info, **(meta or {})}, path)


def load_one_shot(path):
    """(net, sde, config dict) of a file written by :func:`save_one_shot` (or by the
    earlier format of this bench: ``config`` and the network's ``state_dict``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if CONFIG_KEY in ckpt:
        model = model_from_checkpoint(ckpt, path)
        return model.score_model.eval(), model.sde, ckpt[CONFIG_KEY]
    check_targets(ckpt["config"]["model"], MODEL_TARGETS, path)
    model = instantiate(OmegaConf.create(ckpt["config"]).model)
    model.score_model.load_state_dict(ckpt["state_dict"])
    return model.score_model.eval(), model.sde, ckpt["config"]


def state_path(path):
    """Where the training state of the separator saved at ``path`` goes."""
    path = Path(path)
    return path.with_name(path.name + ".state.pt")


def save_run(path, model, cfg, opt, step, minutes, curve, threads):
    """The separator (:func:`save_one_shot`) and, beside it, what continuing its training
    needs; each written atomically, the state first, both labelled with ``step``."""
    state = {"optimizer": opt.state_dict(), "step": step, "minutes": minutes, "curve": curve}
    target = state_path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(target)
    save_one_shot(path, model, cfg, {"steps": step, "minutes": round(minutes, 1),
                                     "threads": threads, "lr": opt.param_groups[0]["lr"]})


def read_separator(path, flag):
    """(the network's ``state_dict``, steps, minutes) of a separator saved by --save (or
    shipped); ``flag`` names the option that gave ``path`` in errors."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{flag} {path}: no such file (a file written by --save)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = ckpt.get("state_dict")
    if state_dict is None:
        raise SystemExit(f"{flag} {path}: not a separator written by --save")
    if CONFIG_KEY in ckpt:  # the inference format: the whole model's state
        prefix = "score_model."
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    meta = ckpt.get(META_KEY, {})  # a shipped partner's meta gives hours, not minutes
    minutes = float(meta.get("minutes", 60.0 * float(meta.get("hours", 0.0))))
    return state_dict, int(meta.get("steps", 0)), minutes


def grow_run(path, model):
    """Start ``model``'s network from the separator saved at ``path``, which has fewer
    BLSTM layers (``FrameBLSTM.load_shallower``: the new layers start as the identity, so
    the grown network separates as the saved one did). Returns (step, minutes) so far;
    Adam starts afresh."""
    state_dict, step, minutes = read_separator(path, "--grow-from")
    net = model.score_model
    if not hasattr(net.backbone, "load_shallower"):
        raise SystemExit(f"--grow-from needs a FrameBLSTM backbone, the experiment's is "
                         f"{type(net.backbone).__name__}")
    inner = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    try:
        added = net.backbone.load_shallower(inner)
        rest = {k: v for k, v in state_dict.items() if not k.startswith("backbone.")}
        net.load_state_dict({**net.state_dict(), **rest})
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"--grow-from {path}: its network cannot grow into the experiment's "
                         f"(same settings but a larger model.score_model.backbone.n_layers)"
                         f"\n{e}") from None
    print(f"grew {path} by {added} BLSTM layer(s): {net.backbone.n_layers} in all")
    return step, minutes


def resume_run(path, model, opt):
    """Load the separator saved at ``path`` into ``model`` and, when its state file is
    there and of the same step, Adam's moments into ``opt``. Returns (step, minutes,
    curve) so far."""
    state_dict, step, minutes = read_separator(path, "--resume")
    try:
        model.score_model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise SystemExit(f"--resume {path}: its network does not match the experiment's (give "
                         f"the --experiment and overrides it was trained with)\n{e}") from None
    curve = []
    state_file = state_path(path)
    if state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if int(state["step"]) == step:
            opt.load_state_dict(state["optimizer"])
            for group in opt.param_groups:  # an annealed sitting saved its last, low rate
                group["lr"] = opt.defaults["lr"]
            curve = list(state["curve"])
        else:
            print(f"warning: {state_file} is of step {state['step']}, the separator of step "
                  f"{step}: Adam starts afresh", file=sys.stderr)
    else:
        print(f"warning: no training state beside {path}: Adam starts afresh",
              file=sys.stderr)
    return step, minutes, curve


def pit_loss(est, tgt):
    sdr, _ = pit_si_sdr(est, tgt)
    return -sdr.mean()


def pit_mse_loss(est, tgt):
    """Mean squared error, minimised over the K! source orders per example."""
    errs = [(est - tgt[:, list(p)]).pow(2).mean(dim=(1, 2))
            for p in itertools.permutations(range(tgt.shape[1]))]
    return torch.stack(errs).min(dim=0).values.mean()


def power_mse_loss(est, tgt):
    """Mean squared error against the sources sorted loudest first (no PIT)."""
    order = tgt.pow(2).mean(-1).argsort(dim=1, descending=True)
    return (est - torch.gather(tgt, 1, order[..., None].expand_as(tgt))).pow(2).mean()


def lr_factor(elapsed_s, budget_s, anneal_s, floor):
    """The learning rate's multiplier ``elapsed_s`` into a sitting of ``budget_s``: 1,
    then over the last ``anneal_s`` a half cosine from 1 down to ``floor``."""
    start = budget_s - anneal_s
    if anneal_s <= 0 or elapsed_s <= start:
        return 1.0
    frac = min(1.0, (elapsed_s - start) / anneal_s)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


LOSSES = {"si-sdr": pit_loss, "mse": pit_mse_loss, "mse-power": power_mse_loss}


@torch.no_grad()
def validate(net, sde, batches):
    vals = []
    for mix, tgt in batches:
        sdr, _ = pit_si_sdr(estimate(net, sde, mix), tgt)
        ref = si_sdr(mix.expand_as(tgt), tgt)
        vals.append((sdr - ref).mean(dim=1))
    return float(torch.cat(vals).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training wall time")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--val-every", type=int, default=150, help="steps between validations")
    ap.add_argument("--loss", choices=sorted(LOSSES), default="si-sdr",
                    help="negative PIT SI-SDR (default), PIT MSE, or MSE loudest first")
    ap.add_argument("--out", type=Path, default=None, help="write the curve here (JSON)")
    ap.add_argument("--experiment", default="demo", help="experiment config (default demo)")
    ap.add_argument("--save", type=Path, default=None,
                    help="write the trained separator here (bench_pretrained.py --baseline; "
                         "train.py init_from=PATH starts a diffusion model from it)")
    ap.add_argument("--save-every", type=float, default=10.0, metavar="MIN",
                    help="with --save: also write it (and its training state) this often")
    ap.add_argument("--resume", type=Path, default=None,
                    help="continue the run saved in this file (same experiment, overrides)")
    ap.add_argument("--grow-from", type=Path, default=None, metavar="FILE",
                    help="start from the separator in FILE grown deeper: the experiment's "
                         "network with more BLSTM layers (model.score_model.backbone."
                         "n_layers=...), the new ones starting as the identity; fresh Adam")
    ap.add_argument("--anneal", type=float, default=0.0, metavar="MIN",
                    help="lower the learning rate along a half cosine over the last MIN "
                         "minutes of this sitting (default 0: constant)")
    ap.add_argument("--anneal-floor", type=float, default=0.02, metavar="F",
                    help="with --anneal: the rate at the end, as a fraction of the start")
    ap.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides of the demo config")
    args = ap.parse_args(argv)
    if args.save_every <= 0:
        ap.error("--save-every must be positive")
    if not 0 <= args.anneal <= args.minutes:
        ap.error(f"--anneal {args.anneal:g} must be between 0 and --minutes {args.minutes:g}")
    if not 0 < args.anneal_floor <= 1:
        ap.error(f"--anneal-floor {args.anneal_floor:g} must be in (0, 1]")
    if args.resume and args.grow_from:
        ap.error("--resume and --grow-from exclude each other: grow once, then resume "
                 "the file the grown run saved")
    if args.resume and not args.save:
        ap.error("--resume needs --save: where the continued run goes (it may be the same file)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            ap.error("--device cuda: no GPU is visible to torch")
        torch.backends.cuda.matmul.allow_tf32 = True  # the BLSTM's matrix products
        torch.backends.cudnn.allow_tf32 = True

    cfg = demo_config(args.overrides, args.experiment)
    torch.manual_seed(int(cfg.seed))
    dm = instantiate(cfg.datamodule)
    dm.setup("fit")
    model = instantiate(cfg.model).to(device)
    net, sde = model.score_model, model.sde
    opt = model.optimizer_factory(params=net.parameters())
    base_lr = opt.defaults["lr"]
    clip = float(cfg.trainer.get("gradient_clip_val") or 0.0)
    val = []
    for i, batch in enumerate(dm.val_dataloader()):
        if i >= int(cfg.model.valid_max_sep_batches):
            break
        val.append((batch[0].to(device), batch[1].to(device)))

    curve, step, before = [], 0, 0.0
    if args.resume:
        step, before, curve = resume_run(args.resume, model, opt)
        torch.manual_seed(int(cfg.seed) + step)  # not the first sitting's batches again
        print(f"resuming {args.resume} at step {step} ({before:.1f} min so far)")
    if args.grow_from:
        step, before = grow_run(args.grow_from, model)
        torch.manual_seed(int(cfg.seed) + step)
    first_step, t0 = step, time.time()
    last_save = t0
    budget = 60.0 * args.minutes
    threads = torch.get_num_threads()
    print(f"training {sum(p.numel() for p in net.parameters())} parameters for "
          f"{args.minutes:g} min; validation on {sum(m.shape[0] for m, _ in val)} excerpts")
    print(f"{'step':>6} {'minutes':>8} {'train loss':>11} {'val SI-SDRi dB':>15} {'lr':>9}")
    running = []
    loader = dm.train_dataloader()  # once: persistent workers stay up between epochs
    while time.time() - t0 < budget:
        for mix, tgt, *_ in loader:
            if time.time() - t0 >= budget:
                break
            lr = base_lr * lr_factor(time.time() - t0, budget, 60.0 * args.anneal,
                                     args.anneal_floor)
            for group in opt.param_groups:
                group["lr"] = lr
            mix_n, tgt_n, _ = normalize(mix.to(device), tgt.to(device))
            loss = LOSSES[args.loss](one_shot(net, sde, mix_n), tgt_n)
            opt.zero_grad()
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            running.append(float(loss.detach()))
            step += 1
            if step % args.val_every == 0:
                net.eval()
                sdri = validate(net, sde, val)
                net.train()
                row = dict(step=step, minutes=round(before + (time.time() - t0) / 60, 2),
                           train_loss=sum(running) / len(running), si_sdri=sdri, lr=lr)
                running = []
                curve.append(row)
                print(f"{row['step']:>6} {row['minutes']:>8.2f} {row['train_loss']:>11.3f} "
                      f"{row['si_sdri']:>15.2f} {lr:>9.2e}", flush=True)
            if args.save and time.time() - last_save >= 60.0 * args.save_every:
                save_run(args.save, model, cfg, opt, step,
                         before + (time.time() - t0) / 60, curve, threads)
                last_save = time.time()
    elapsed = time.time() - t0
    rate = (step - first_step) / elapsed
    print(f"{step} steps, {before + elapsed / 60:.1f} min in all "
          f"({step - first_step} in {elapsed / 60:.1f} min this sitting, {rate:.2f} steps/s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(steps=step, minutes=before + elapsed / 60,
                                            steps_per_s=rate, curve=curve), indent=1))
    if args.save:
        save_run(args.save, model, cfg, opt, step, before + elapsed / 60, curve, threads)
        print(f"wrote {args.save} and {state_path(args.save)}")


if __name__ == "__main__":
    main()

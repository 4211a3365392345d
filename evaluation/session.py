"""One evaluation run: inputs, result folder, per-split stores, final merge.

`EvalSession` is what both scripts build; `evaluate_mp.py` workers rebuild the
same session from `spec` on their own device.
"""

import dataclasses
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from evaluation.inputs import EvaluationInputError, build_dataset, load_separator
from evaluation.results import ItemStore, write_results
from evaluation.runner import NO_PROC, evaluate_indices
from sdes import SAMPLER_DEFAULTS


def _versions():
    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "pesq", "pystoi", "soxr", "pytorch-lightning"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parents[1]).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def _file_id(path):
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _partner_id(partner):
    """What a one-shot partner does beyond its file: its speed views and post-filter."""
    pf = partner.postfilter
    return {"views": list(partner.views),
            "postfilter": None if pf is None else {"name": type(pf).__name__,
                                                   **dataclasses.asdict(pf)}}


def redirect_data(config, data_root=None, overrides=()):
    """Point the datasets of a checkpoint's config at `data_root` (every `root` key of
    `datamodule`) and apply `datamodule.KEY=VALUE` overrides, in place."""
    if config is None or (not data_root and not overrides):
        return
    if "datamodule" not in config:
        raise EvaluationInputError("the checkpoint's config has no datamodule to redirect")
    if data_root:
        stack = [config.datamodule]
        while stack:
            node = stack.pop()
            if OmegaConf.is_dict(node):
                for key in list(node.keys()):
                    if key == "root":
                        node[key] = str(data_root)
                    else:
                        stack.append(node[key])
    for item in overrides:
        key, value = item.split("=", 1)
        OmegaConf.update(config, key, yaml.safe_load(value), merge=True)


class EvalSession:
    """Separator, datasets of the requested splits and the result folder."""

    def __init__(self, ckpt, settings, splits, device="cpu", output_dir="results",
                 libri_root="data/LibriMix", config_from=None, datamodule=None, overrides=(),
                 data_root=None):
        self.spec = {"ckpt": ckpt, "settings": settings, "splits": list(splits),
                     "output_dir": str(output_dir), "libri_root": libri_root,
                     "config_from": config_from, "datamodule": datamodule,
                     "overrides": list(overrides), "data_root": data_root}
        self.ckpt, self.device = ckpt, device
        self.separator = load_separator(ckpt, device, config_from, datamodule, overrides,
                                        blend=settings.blend, one_shot=settings.one_shot)
        if datamodule is None:  # a checkpoint's config: point it at other data if asked
            redirect_data(self.separator.config, data_root, overrides)
        # Sampler options not given take the model's own (the baseline has none).
        self.settings = settings.resolve_sampler(
            getattr(self.separator, "sampler", None) or SAMPLER_DEFAULTS)
        # Build every split first: a missing folder fails before any work is done.
        self.datasets = {s: build_dataset(self.separator, s, libri_root) for s in splits}
        ckpt_name = "" if ckpt == NO_PROC else Path(ckpt).stem  # infer_params says no_proc
        # The one-shot partner, blended into the model's estimate or used alone; one of
        # the two halves' result folders is marked "blend", the other "one_shot".
        self.partner = getattr(self.separator, "partner", None)
        blended = self.partner is not None and not settings.one_shot
        parts = [self.separator.exp_name, ckpt_name, self.settings.infer_params(),
                 "blend" if blended else ""]
        self.result_dir = Path(output_dir) / "_".join(p for p in parts if p)

    def source_id(self):
        if self.ckpt != NO_PROC:
            sp = self.spec
            data = ({"data_root": sp["data_root"], "overrides": sp["overrides"]}
                    if sp["data_root"] or sp["overrides"] else {})
            if self.settings.one_shot:  # the file that separates
                data["one_shot"] = {**_file_id(self.partner.path), **_partner_id(self.partner)}
            elif self.partner is not None:  # the blend's other half
                data["partner"] = {**_file_id(self.partner.path), "weight": self.partner.weight,
                                   **_partner_id(self.partner)}
            return {"checkpoint": _file_id(self.ckpt), **data}
        sp = self.spec
        src = _file_id(sp["config_from"]) if sp["config_from"] else None
        return {"checkpoint": NO_PROC, "config_from": src, "datamodule": sp["datamodule"],
                "overrides": sp["overrides"], "data_root": sp["data_root"]}

    def indices(self, split):
        n = len(self.datasets[split])
        limit = self.settings.limit
        return list(range(n if limit is None else min(n, limit)))

    def store(self, split):
        ds = self.datasets[split]
        names = getattr(ds, "names", None) or [str(i) for i in range(len(ds))]
        digest = hashlib.md5("\n".join(map(str, names)).encode()).hexdigest()
        fingerprint = {**self.source_id(), "split": split, "n_items": len(ds),
                       "names_md5": digest, "settings": self.settings.fingerprint()}
        return ItemStore(self.result_dir, split, fingerprint)

    def todo(self, split, overwrite=False):
        """Indices of `split` with no finished record yet (opens the store)."""
        done = self.store(split).open(overwrite).done()
        return [i for i in self.indices(split) if i not in done]

    def run(self, split, indices, stop_after=None, dl_workers=0, progress=None):
        return evaluate_indices(
            self.separator, self.datasets[split], split, indices, self.settings,
            self.store(split), self.device, self.result_dir / f"{split}_samples",
            dl_workers=dl_workers, stop_after=stop_after, progress=progress)

    def finish(self, split, run_info=None):
        """Merge the records of `split` into `{split}.json` and its summary."""
        records = self.store(split).read(self.indices(split))
        dataset = self.datasets[split]
        fs = int(getattr(dataset, "fs", self.separator.fs))
        music = self.settings.music_metrics(dataset)
        settings = {
            "split": split,
            "checkpoint": str(Path(self.ckpt).resolve()) if self.ckpt != NO_PROC else NO_PROC,
            "exp_name": self.separator.exp_name,
            "sampler": (None if self.settings.no_proc or self.settings.one_shot
                        else self.settings.sampler_kwargs()),
            "metric_settings": self.settings.metric_settings(
                fs, music, self.settings.keeps_order(self.separator)),
            "seed": self.settings.seed,
            "limit": self.settings.limit,
            "source": self.source_id(),
            "run": run_info or {},
            "command": sys.argv,
            "versions": _versions(),
        }
        return write_results(self.result_dir, split, records, settings)

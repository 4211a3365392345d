"""The evaluation loop shared by `evaluate.py` and `evaluate_mp.py`.

A separator (a DiffSep model, or `MixtureBaseline` for `__no_proc__`) is run on
one utterance at a time; the sampler is seeded from (seed, dataset index), so a
record does not depend on which worker or run produced it. Each finished record
goes to an `ItemStore` at once; a failing utterance becomes an error record.
"""

import os
import time
import traceback
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from evaluation.metrics import default_pesq_mode, score_item
from evaluation.samples import save_sample

NO_PROC = "__no_proc__"
LIBRI_SPLITS = ("libri-clean", "libri-noisy")
CONFIG_SPLITS = ("val", "test")


@dataclass
class Settings:
    """Sampler and metric settings of a run (None pesq_mode: chosen from fs)."""

    N: int = 30
    snr: float = 0.5
    corrector_steps: int = 1
    denoise: bool = True
    schedule: str = "linear"
    pesq_mode: str | None = None
    stoi_extended: bool = True
    enhance: bool = False
    seed: int = 0
    save_n: int = 0
    limit: int | None = None
    tag: str | None = None
    no_proc: bool = False

    def sampler_kwargs(self):
        return {"N": self.N, "snr": self.snr, "corrector_steps": self.corrector_steps,
                "denoise": self.denoise, "schedule": self.schedule}

    def infer_params(self):
        """Folder suffix, e.g. `N-30_snr-0.50_corr-1_den-True_sch-linear[_tag]`."""
        base = "no_proc" if self.no_proc else (
            f"N-{self.N}_snr-{self.snr:.2f}_corr-{self.corrector_steps}"
            f"_den-{self.denoise}_sch-{self.schedule}")
        return f"{base}_{self.tag}" if self.tag else base

    def resolved_pesq_mode(self, fs):
        if self.pesq_mode is not None:
            return self.pesq_mode
        # Enhancement is reported with wide-band PESQ (VoiceBank-DEMAND is 16 kHz).
        return "wb" if self.enhance else default_pesq_mode(fs)

    def metric_settings(self, fs):
        return {"fs": fs, "pesq_mode": self.resolved_pesq_mode(fs),
                "stoi_extended": self.stoi_extended, "enhance": self.enhance,
                "zero_mean": True, "permutation": "none" if self.enhance else "si_sir"}

    def fingerprint(self):
        """The settings that change records (not limit, save_n or tag)."""
        d = asdict(self)
        for k in ("save_n", "limit", "tag"):
            d.pop(k)
        return d


def item_seed(seed, index):
    """Per-utterance seed, independent of worker slicing and run order."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


class MixtureBaseline:
    """`__no_proc__`: every estimate is the unprocessed mixture (NFE 0)."""

    def __init__(self, fs, n_sources, source_names, config, exp_name):
        self.fs, self.n_sources, self.source_names = fs, n_sources, list(source_names)
        self.config, self.exp_name = config, exp_name

    def separate(self, mix, intermediate=False, **_sampler_kwargs):
        # Sampler settings do not apply to the identity "separator".
        est = mix.expand(-1, self.n_sources, -1).clone()
        return est, 0, ([(0.0, est)] if intermediate else None)


class _SafeItems(Dataset):
    """Dataset items by index, with a loading failure returned instead of raised."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        idx = self.indices[j]
        try:
            mix, tgt = self.dataset[idx]
            return idx, mix, tgt, None
        except Exception as e:
            return idx, None, None, f"loading failed: {type(e).__name__}: {e}"


def _first(batch):
    return batch[0]


def _error_record(base, message):
    return {**base, "status": "error", "error": message}


def _item_name(dataset, idx):
    names = getattr(dataset, "names", None)
    return str(names[idx]) if names is not None else str(idx)


def evaluate_item(separator, idx, mix, tgt, base, settings, device, sample_dir=None):
    """Separate and score one utterance; returns the record (raises on failure)."""
    fs = separator.fs
    n = mix.shape[-1]
    seed = item_seed(settings.seed, idx)
    torch.manual_seed(seed)  # in case a sampler also draws from the global RNG
    gen = torch.Generator(device=device).manual_seed(seed)
    want_figure = idx < settings.save_n
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        est, nfe, inter = separator.separate(
            mix[None].to(device), **settings.sampler_kwargs(), intermediate=want_figure,
            generator=gen)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    run_time = time.perf_counter() - t0
    est = est[0].detach().cpu().double().numpy()
    ref = tgt.double().numpy()
    if est.shape != ref.shape:
        raise RuntimeError(f"separator returned {est.shape}, references are {ref.shape}")
    t1 = time.perf_counter()
    scores = score_item(est, ref, mix[0].double().numpy(), fs, settings.resolved_pesq_mode(fs),
                        settings.stoi_extended, settings.enhance)
    record = {**base, "status": "ok", "error": None,
              "source_names": list(separator.source_names[:len(scores["si_sdr"])]),
              "nfe": int(nfe), **scores,
              "run_time_s": run_time, "metric_time_s": time.perf_counter() - t1,
              "rtf": run_time / (n / fs)}
    if want_figure and sample_dir is not None:
        perm = np.arange(ref.shape[0]) if scores["perm"] is None or settings.enhance \
            else np.asarray(scores["perm"])
        steps = [(t, x[0, perm].detach().cpu().numpy()) for t, x in (inter or [])]
        save_sample(sample_dir, idx, base["name"], fs, mix[0].numpy(), est[perm], ref,
                    separator.source_names, steps)
    return record


def evaluate_indices(separator, dataset, split, indices, settings, store, device,
                     sample_dir=None, dl_workers=0, stop_after=None, progress=None):
    """Evaluate `indices` of `dataset`, writing each record to `store` when done.

    `stop_after` (tests only) ends the process abruptly after that many records,
    as a kill would. Returns the number of records written.
    """
    device = torch.device(device)
    loader = DataLoader(_SafeItems(dataset, indices), batch_size=1,
                        collate_fn=_first, num_workers=dl_workers)
    fs = separator.fs
    written = 0
    for idx, mix, tgt, load_error in loader:
        base = {"index": int(idx), "name": _item_name(dataset, idx), "split": split,
                "seed": item_seed(settings.seed, idx)}
        if load_error is None:
            base.update(n_samples=int(mix.shape[-1]), duration_s=mix.shape[-1] / fs)
            try:
                record = evaluate_item(separator, idx, mix, tgt, base, settings, device,
                                       sample_dir)
            except Exception as e:
                last = traceback.extract_tb(e.__traceback__)[-1]
                record = _error_record(
                    base, f"{type(e).__name__}: {e} ({last.filename}:{last.lineno})")
        else:
            record = _error_record(base, load_error)
        store.write(record)
        written += 1
        if progress is not None:
            progress(record)
        if stop_after is not None and written >= stop_after:
            os._exit(75)
    return written

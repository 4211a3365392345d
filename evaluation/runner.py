"""The evaluation loop shared by `evaluate.py` and `evaluate_mp.py`.

A separator (a DiffSep model, or `MixtureBaseline` for `__no_proc__`) is run on
one utterance at a time; the sampler is seeded from (seed, dataset index), so a
record does not depend on which worker or run produced it. Each finished record
goes to an `ItemStore` at once; a failing utterance becomes an error record.

Speech items (mix (1, L), tgt (K, L)) are separated whole and scored with the
SI-SDR family, PESQ and ESTOI. Music items (a dataset with ``domain = "music"``;
stereo ones are mix (C, L), tgt (K, C, L)) are separated channel by channel in
overlapping segments (bounded memory on full songs), at the model's rate and back,
and scored with BSS Eval v4 and the SI-SDR family (`evaluation.music`). Sources
are matched to the references (PIT) unless the separator's outputs are labelled
(a fixed-order model such as the music stems, or enhancement).
"""

import math
import os
import time
import traceback
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from evaluation.music import score_music_item
from evaluation.samples import save_sample
from evaluation.separator import MUSIC_SEGMENT_S, Separator, labelled_sources
from metrics.separation import default_pesq_mode, score_item
from sdes import SAMPLER_DEFAULTS

NO_PROC = "__no_proc__"
LIBRI_SPLITS = ("libri-clean", "libri-noisy")
CONFIG_SPLITS = ("val", "test")
METRIC_SETS = ("auto", "speech", "music")
PERMUTATIONS = ("auto", "pit", "none")


# The sampler options of Settings that always have a value once resolved (final_step may
# stay None: the model's own then applies inside model.separate).
SAMPLER_FIELDS = ("N", "snr", "corrector_steps", "denoise", "schedule")


@dataclass
class Settings:
    """Sampler and metric settings of a run (None pesq_mode: chosen from fs)."""

    # Sampler options; None takes the model's own (`resolve_sampler`, which EvalSession
    # applies; `evaluate.py` passes None for every option not given).
    N: int | None = SAMPLER_DEFAULTS["N"]  # None: the SDE's own number of steps
    snr: float | None = SAMPLER_DEFAULTS["snr"]
    corrector_steps: int | None = SAMPLER_DEFAULTS["corrector_steps"]
    denoise: bool | None = SAMPLER_DEFAULTS["denoise"]
    schedule: str | None = SAMPLER_DEFAULTS["schedule"]
    final_step: bool | None = None
    pesq_mode: str | None = None
    stoi_extended: bool = True
    enhance: bool = False
    seed: int = 0
    save_n: int = 0
    limit: int | None = None
    tag: str | None = None
    no_proc: bool = False
    metrics: str = "auto"  # speech | music | auto (music for datasets of domain "music")
    permutation: str = "auto"  # pit | none | auto (none for labelled outputs)
    segment: float | None = None  # s; None: whole items (music: MUSIC_SEGMENT_S)
    overlap: float = 0.25
    blend: bool = True  # a shipped model's one-shot partner, when it has one (models/blend.py)
    one_shot: bool = False  # a shipped model's one-shot separator alone: no sampler

    def __post_init__(self):
        if self.metrics not in METRIC_SETS:
            raise ValueError(f"metrics must be one of {METRIC_SETS}, got {self.metrics!r}")
        if self.permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {PERMUTATIONS}")

    @classmethod
    def model_sampler(cls, **kwargs):
        """Settings whose sampler options all come from the model (`resolve_sampler`)."""
        return cls(**{**dict.fromkeys(SAMPLER_FIELDS), **kwargs})

    def resolve_sampler(self, model_sampler):
        """These settings with every None sampler option taken from `model_sampler`."""
        return replace(self, **{k: model_sampler[k] for k in SAMPLER_FIELDS
                                if getattr(self, k) is None})

    def sampler_kwargs(self):
        if self.one_shot:  # no sampler to set
            return {}
        kw = {k: getattr(self, k) for k in SAMPLER_FIELDS}
        if self.final_step is not None:
            kw["final_step"] = self.final_step
        return kw

    def infer_params(self):
        """Folder suffix, e.g. `N-30_snr-0.50_corr-1_den-True_sch-linear[_tag]`."""
        base = "no_proc" if self.no_proc else "one_shot" if self.one_shot else (
            f"N-{self.N}_snr-{self.snr:.2f}_corr-{self.corrector_steps}"
            f"_den-{self.denoise}_sch-{self.schedule}"
            + ("" if self.final_step is None else f"_fin-{self.final_step}"))
        return f"{base}_{self.tag}" if self.tag else base

    def resolved_pesq_mode(self, fs):
        if self.pesq_mode is not None:
            return self.pesq_mode
        # Enhancement is reported with wide-band PESQ (VoiceBank-DEMAND is 16 kHz).
        return "wb" if self.enhance else default_pesq_mode(fs)

    def music_metrics(self, dataset):
        """True when `dataset` is scored with the music metrics."""
        if self.metrics == "auto":
            return getattr(dataset, "domain", "speech") == "music"
        return self.metrics == "music"

    def keeps_order(self, separator):
        """True when estimate k is scored against reference k (no permutation)."""
        if self.enhance or self.permutation == "none":
            return True
        return self.permutation == "auto" and labelled_sources(separator)

    def segment_s(self, music):
        return self.segment if self.segment is not None else (MUSIC_SEGMENT_S if music else None)

    def metric_settings(self, fs, music=False, keeps_order=None):
        keeps_order = self.enhance if keeps_order is None else keeps_order
        if music:
            from evaluation.music import HOP_S, WIN_S

            return {"fs": fs, "metrics": "music", "zero_mean": True,
                    "permutation": "none" if keeps_order else "si_sir",
                    "bss_eval": {"version": 4, "win_s": WIN_S, "hop_s": HOP_S,
                                 "track": "median over windows", "summary": "median over tracks"},
                    "segment_s": self.segment_s(True), "overlap": self.overlap}
        return {"fs": fs, "pesq_mode": self.resolved_pesq_mode(fs),
                "stoi_extended": self.stoi_extended, "enhance": self.enhance,
                "zero_mean": True, "permutation": "none" if keeps_order else "si_sir"}

    def fingerprint(self):
        """The settings that change records (not limit, save_n or tag; nor blend and
        one_shot: the partner, blended or alone, is part of the session's source id, so
        records of checkpoints that have none keep their fingerprint whatever the flags)."""
        d = asdict(self)
        for k in ("save_n", "limit", "tag", "blend", "one_shot"):
            d.pop(k)
        return d


def item_seed(seed, index):
    """Per-utterance seed, independent of worker slicing and run order."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


class MixtureBaseline:
    """`__no_proc__`: every estimate is the unprocessed mixture (NFE 0)."""

    # Every estimate is the mixture: no order to resolve, and any sample rate works.
    labelled_sources = True
    rate_free = True

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


class _AtRate:
    """A rate-free separator seen as a model of rate `fs` (no resampling around it)."""

    def __init__(self, separator, fs):
        self.separator, self.fs = separator, fs
        self.n_sources = int(separator.n_sources)
        self.source_names = list(separator.source_names) or [
            f"s{k + 1}" for k in range(self.n_sources)]
        self.labelled_sources = labelled_sources(separator)

    def separate(self, mix, **kwargs):
        return self.separator.separate(mix, **kwargs)


def separate_chunked(separator, mix, fs, settings, seed, device, keep_order, music):
    """Separate ``mix (C, L)`` at rate ``fs`` channel by channel in overlapping segments,
    with the inference path of ``separate.py`` (:class:`evaluation.separator.Separator`).

    Returns ``(est (K, C, L) numpy float64, nfe of one sampler call)``. The mixture is
    resampled to the separator's rate and the estimates back; with unlabelled outputs
    the source order is re-matched between channels and segments. The sampler noise is
    seeded with ``seed``.
    """
    model = _AtRate(separator, fs) if getattr(separator, "rate_free", False) else separator
    whole_s = math.ceil(mix.shape[-1] * int(model.fs) / fs) / int(model.fs)
    seg_s = settings.segment_s(music)
    sep = Separator(model, segment=whole_s if seg_s is None else min(seg_s, whole_s),
                    overlap=settings.overlap, batch_size=mix.shape[0], rematch=not keep_order,
                    rescale=False, seed=seed, device=device, **settings.sampler_kwargs())
    out = sep.separate_tensor(mix.float(), sr=fs)
    est = np.stack([out[name].numpy() for name in sep.source_names]).astype(np.float64)
    return est, sep.nfe


def evaluate_item(separator, idx, mix, tgt, base, settings, device, sample_dir=None, fs=None,
                  music=False, names=None):
    """Separate and score one item; returns the record (raises on failure).

    ``mix`` (C, L) and ``tgt`` (K, L), or (K, C, L) for multichannel items, at rate
    ``fs`` (default the separator's); ``music`` selects the music metrics; ``names``
    label the references (default the separator's source names).
    """
    fs = int(separator.fs if fs is None else fs)
    n = mix.shape[-1]
    ref = (tgt if tgt.dim() == 3 else tgt[:, None]).double().numpy()  # (K, C, L)
    keep_order = settings.keeps_order(separator)
    seed = item_seed(settings.seed, idx)
    torch.manual_seed(seed)  # in case a sampler also draws from the global RNG
    gen = torch.Generator(device=device).manual_seed(seed)
    # Whole-item separation (speech); music, multichannel items and other rates go
    # through the chunked path.
    chunked = (music or mix.shape[0] > 1 or settings.segment is not None
               or (fs != int(separator.fs) and not getattr(separator, "rate_free", False)))
    want_figure = idx < settings.save_n and not chunked
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    inter = None
    with torch.no_grad():
        if chunked:
            est, nfe = separate_chunked(separator, mix, fs, settings, seed, device,
                                        keep_order, music)
        else:
            est, nfe, inter = separator.separate(
                mix[None].to(device), **settings.sampler_kwargs(), intermediate=want_figure,
                generator=gen)
            est = est[0].detach().cpu().double().numpy()[:, None]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    run_time = time.perf_counter() - t0
    if est.shape != ref.shape:
        raise RuntimeError(f"separator returned {est.shape}, references are {ref.shape}")
    t1 = time.perf_counter()
    mix_np = mix.double().numpy()
    if music:
        scores = score_music_item(est, ref, mix_np, fs, permute=not keep_order)
    elif ref.shape[1] != 1:
        raise RuntimeError(f"speech metrics need single-channel items, got {ref.shape[1]}")
    else:
        est, ref = est[:, 0], ref[:, 0]
        scores = score_item(est, ref, mix_np[0], fs, settings.resolved_pesq_mode(fs),
                            settings.stoi_extended, settings.enhance, permute=not keep_order)
    names = list(separator.source_names if names is None else names)
    record = {**base, "status": "ok", "error": None,
              "source_names": names[:len(scores["si_sdr"])],
              "nfe": int(nfe), **scores,
              "run_time_s": run_time, "metric_time_s": time.perf_counter() - t1,
              "rtf": run_time / (n / fs)}
    if idx < settings.save_n and sample_dir is not None:
        perm = np.arange(ref.shape[0]) if scores["perm"] is None or keep_order \
            else np.asarray(scores["perm"])
        steps = [(t, x[0, perm].detach().cpu().numpy()) for t, x in (inter or [])]
        sample_mix = mix_np[0] if mix_np.shape[0] == 1 else mix_np
        save_sample(sample_dir, idx, base["name"], fs, sample_mix, est[perm], ref, names, steps)
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
    fs = int(getattr(dataset, "fs", separator.fs))
    music = settings.music_metrics(dataset)
    # Record lists are indexed like the references: label them with their names.
    names = getattr(dataset, "source_names", None) or separator.source_names
    written = 0
    for idx, mix, tgt, load_error in loader:
        base = {"index": int(idx), "name": _item_name(dataset, idx), "split": split,
                "seed": item_seed(settings.seed, idx)}
        if load_error is None:
            base.update(n_samples=int(mix.shape[-1]), duration_s=mix.shape[-1] / fs)
            try:
                record = evaluate_item(separator, idx, mix, tgt, base, settings, device,
                                       sample_dir, fs, music, names)
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

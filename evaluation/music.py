"""Music metrics of one track: BSS Eval v4 (SiSEC 2018 / MUSDB18) beside the SI-SDR family.

The MUSDB convention: SDR, ISR, SIR and SAR of stereo stems on 1-s windows (hop 1 s),
the median over the windows of a track (silent windows left out), then the median
over tracks (the per-source median of the summary). :mod:`evaluation.bss_eval_v4`
computes the museval-exact values. The SI-SDR family is computed on the stems with
their channels concatenated (one scale factor per stem).
"""

import warnings

import numpy as np
import torch

from evaluation.bss_eval_v4 import frame_starts, track_metrics
from metrics.separation import si_bss_eval, si_sdr

WIN_S = HOP_S = 1.0  # SiSEC 2018 windows
FILTER_LEN = 512  # museval's distortion filter taps (ISR, SIR, SAR; SDR needs none)
BSS_FIELDS = ("sdr", "isr", "sir", "sar")
SI_FIELDS = ("si_sdr", "si_sir", "si_sar", "si_sdr_improvement")


def _sources_last(x):
    """(K, C, L) -> (K, L, C), the layout of bss_eval_v4 and museval."""
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64).transpose(0, 2, 1))


def framewise_sdr(references, estimates, win, hop):
    """BSS Eval v4 SDR per window ``(K, n_windows)`` without the distortion filters.

    In the v4 "images" decomposition the true source is the reference itself, so the
    SDR of a window is ``10 log10(||s||^2 / ||s_hat - s||^2)`` and needs no filter
    (ISR, SIR and SAR do). Windows where any reference or estimate is silent are NaN,
    as in museval. Inputs are ``(K, L, C)``; used for the mixture's SDR of every track.
    """
    refs, ests = np.asarray(references, np.float64), np.asarray(estimates, np.float64)
    starts, w = frame_starts(refs.shape[1], win, hop)
    out = np.full((refs.shape[0], len(starts)), np.nan)
    for i, s in enumerate(starts):
        r, e = refs[:, s : s + w], ests[:, s : s + w]
        if np.any(np.all(r.sum(-1) == 0, axis=-1)) or np.any(np.all(e.sum(-1) == 0, axis=-1)):
            continue
        num, den = (r**2).sum(axis=(1, 2)), ((e - r) ** 2).sum(axis=(1, 2))
        with np.errstate(divide="ignore"):
            out[:, i] = np.where(den == 0, np.inf, 10 * np.log10(num / np.maximum(den, 1e-300)))
    return out


def track_median(frames):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN source -> NaN
        return np.nanmedian(frames, axis=1)


def score_music_item(est, ref, mix, fs, permute=False):
    """All music metrics of one track as a JSON-ready dict.

    ``est``/``ref``: (K, C, L), ``mix``: (C, L) numpy, at rate ``fs``. With
    ``permute`` the estimates are matched to the references by SI-SIR (unlabelled
    sources); otherwise estimate k is scored against reference k (labelled stems).
    Lists are indexed like the references: ``sdr``, ``isr``, ``sir``, ``sar`` (BSS Eval
    v4, median over 1-s windows), ``mix_sdr`` (the same SDR of the unprocessed
    mixture), ``si_sdr``, ``si_sir``, ``si_sar``, ``mix_si_sdr``, ``si_sdr_improvement``.
    Metrics that cannot be computed are None and listed in ``missing``.
    """
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    mix = np.asarray(mix, dtype=np.float64)
    k = ref.shape[0]
    out = {f: [None] * k for f in (*BSS_FIELDS, *SI_FIELDS)}
    out["missing"] = []
    flat_ref = ref.reshape(k, -1)
    flat_mix = np.broadcast_to(mix.reshape(1, -1), flat_ref.shape).copy()
    out["mix_si_sdr"] = si_sdr(torch.from_numpy(flat_mix), torch.from_numpy(flat_ref)).tolist()
    win, hop = int(WIN_S * fs), int(HOP_S * fs)
    mix_frames = framewise_sdr(_sources_last(ref), _sources_last(np.broadcast_to(mix, ref.shape)),
                               win, hop)
    out["mix_sdr"] = track_median(mix_frames).tolist()

    if not np.isfinite(est).all():
        out["perm"] = None
        out["nonfinite"] = {"nan": int(np.isnan(est).sum()), "inf": int(np.isinf(est).sum())}
        reason = f"estimate has {out['nonfinite']['nan']} NaN and {out['nonfinite']['inf']} inf"
        out["missing"] = [{"metric": f, "source": s, "reason": reason}
                          for f in (*BSS_FIELDS, *SI_FIELDS) for s in range(k)]
        return out

    bss = si_bss_eval(est.reshape(k, -1), flat_ref, permute=permute)
    perm = bss["perm"]
    out["perm"] = perm.tolist()
    for f in ("si_sdr", "si_sir", "si_sar"):
        out[f] = bss[f].tolist()
    out["si_sdr_improvement"] = [s - m for s, m in zip(out["si_sdr"], out["mix_si_sdr"])]
    try:
        v4 = track_metrics(_sources_last(ref), _sources_last(est[perm]), fs, WIN_S, HOP_S,
                           FILTER_LEN)
    except ValueError as e:  # a stem silent over the whole track: museval refuses it too
        out["missing"] += [{"metric": f, "source": s, "reason": f"bss_eval_v4: {e}"}
                           for f in BSS_FIELDS for s in range(k)]
    else:
        for f in BSS_FIELDS:
            out[f] = v4[f].tolist()
    return out

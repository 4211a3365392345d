"""Separation metrics: SI-SDR with PIT, scale-invariant BSS-eval, PESQ and ESTOI.

The torch functions (`si_sdr`, `pairwise_si_sdr`, `pit_si_sdr`) are batched and
used during training/validation. The numpy functions score one utterance for the
evaluation scripts; metrics that cannot be computed return ``None`` with a reason
instead of raising, so one odd utterance never stops a run.
"""

import warnings

import numpy as np
import pystoi
import soxr
import torch
from scipy.optimize import linear_sum_assignment

# Keeps the log finite for perfect estimates / silent references.
_EPS = 1e-8


def si_sdr(est, ref, zero_mean=True, eps=_EPS):
    """Scale-invariant SDR in dB along the last axis (broadcasting torch tensors)."""
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def pairwise_si_sdr(est, ref, zero_mean=True):
    """SI-SDR of every (reference, estimate) pair: ``(B, K_ref, K_est)``."""
    return si_sdr(est.unsqueeze(-3), ref.unsqueeze(-2), zero_mean=zero_mean)


def best_permutation(score):
    """Permutation maximising the summed pairwise score.

    ``score`` is ``(B, K_ref, K_est)`` (numpy or torch); returns a long tensor
    ``(B, K_ref)`` with the estimate index chosen for each reference. The
    criterion is a sum of pairwise terms, so the Hungarian algorithm is exact for
    every K (no need to enumerate K! permutations).
    """
    if isinstance(score, torch.Tensor):
        score = score.detach().to("cpu", torch.float64).numpy()
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-1e9, posinf=1e9, neginf=-1e9)
    perms = []
    for s in score:
        rows, cols = linear_sum_assignment(s, maximize=True)
        perm = np.empty(s.shape[0], dtype=np.int64)
        perm[rows] = cols
        perms.append(perm)
    return torch.from_numpy(np.stack(perms))


def pit_si_sdr(est, ref, zero_mean=True):
    """Permutation-invariant SI-SDR.

    Returns ``(si_sdr (B, K), perm (B, K))`` where ``perm[b, k]`` is the index of
    the estimate matched with reference ``k``; gradients flow through the scores.
    """
    pair = pairwise_si_sdr(est, ref, zero_mean=zero_mean)
    perm = best_permutation(pair).to(pair.device)
    return pair.gather(-1, perm.unsqueeze(-1)).squeeze(-1), perm


def _decompose(est, ref, zero_mean):
    """Scale-invariant BSS-eval projections for every (ref i, est j) pair (float64).

    Returns ``(target, interf, artif)`` energies, each ``(K_ref, K_est)``:
    ``s_target`` is the projection of est j on ref i, ``e_interf`` the rest of the
    projection on the span of all references, ``e_artif`` what is outside the span.
    """
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if zero_mean:
        est = est - est.mean(-1, keepdims=True)
        ref = ref - ref.mean(-1, keepdims=True)
    # Projection on the span of all references; lstsq copes with silent refs.
    coef, *_ = np.linalg.lstsq(ref.T, est.T, rcond=None)  # (K_ref, K_est)
    proj_all = (ref.T @ coef).T  # (K_est, L)
    ref_energy = (ref**2).sum(-1)  # (K_ref,)
    cross = ref @ est.T  # (K_ref, K_est)
    alpha = cross / np.maximum(ref_energy[:, None], _EPS)
    target = alpha**2 * ref_energy[:, None]  # ||alpha r_i||^2
    # e_interf = proj_all_j - alpha_ij r_i, formed explicitly: the energy difference
    # ||proj_all||^2 - ||s_target||^2 cancels catastrophically for good estimates.
    interf_sig = proj_all[None, :, :] - alpha[:, :, None] * ref[:, None, :]
    interf = (interf_sig**2).sum(-1)
    artif = ((est - proj_all) ** 2).sum(-1)[None, :].repeat(ref.shape[0], 0)
    return target, interf, artif


def _db(num, den):
    return 10 * np.log10((num + _EPS) / (den + _EPS))


def si_bss_eval(est, ref, zero_mean=True, permute=True):
    """Per-source SI-SDR, SI-SIR, SI-SAR of one utterance (``est``, ``ref``: (K, L)).

    The permutation maximises the mean SI-SIR, as BSS-eval does. Returns a dict of
    numpy arrays ``si_sdr``, ``si_sir``, ``si_sar`` (indexed by reference) and
    ``perm`` (estimate index for each reference).
    """
    target, interf, artif = _decompose(est, ref, zero_mean)
    sdr = _db(target, interf + artif)
    sir = _db(target, interf)
    sar = _db(target + interf, artif)
    k = sdr.shape[0]
    perm = best_permutation(sir[None])[0].numpy() if permute else np.arange(k)
    idx = np.arange(k)
    return {
        "si_sdr": sdr[idx, perm],
        "si_sir": sir[idx, perm],
        "si_sar": sar[idx, perm],
        "perm": perm,
    }


def _is_silent(x):
    return not np.any(np.abs(x) > 1e-10)


def pesq_target_fs(fs, mode):
    """Rate PESQ runs at: 16 kHz for wide-band; native 8/16 kHz (else 8 kHz) for nb."""
    if mode == "wb":
        return 16000
    if mode == "nb":
        return fs if fs in (8000, 16000) else 8000
    raise ValueError(f"PESQ mode must be 'nb' or 'wb', got {mode!r}")


def default_pesq_mode(fs):
    """Narrow-band below 16 kHz, wide-band from 16 kHz (the paper's convention)."""
    return "wb" if fs >= 16000 else "nb"


def pesq_score(est, ref, fs, mode):
    """PESQ of one source: ``(value, None)`` or ``(None, reason)``."""
    target = pesq_target_fs(fs, mode)
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if _is_silent(ref):
        return None, "pesq: reference is silent"
    if target != fs:
        est = soxr.resample(est, fs, target)
        ref = soxr.resample(ref, fs, target)
    try:
        import pesq as pesq_lib  # imported on first use: training never needs it
    except ImportError as err:
        return None, f"pesq: the pesq package is not installed ({err})"
    try:
        return float(pesq_lib.pesq(target, ref, est, mode)), None
    except pesq_lib.PesqError as err:
        return None, f"pesq: {type(err).__name__}: {err}"


# pystoi works at 10 kHz with 256-sample frames (hop 128) and needs 30 frames.
_STOI_FS, _STOI_HOP, _STOI_MIN_FRAMES = 10000, 128, 30


def stoi_score(est, ref, fs, extended=True):
    """(E)STOI of one source: ``(value, None)`` or ``(None, reason)``.

    pystoi returns the placeholder 1e-5 with a warning when too few non-silent
    frames remain; that is a missing value, not a score.
    """
    name = "estoi" if extended else "stoi"
    min_len = _STOI_MIN_FRAMES * _STOI_HOP * fs / _STOI_FS
    if len(ref) < min_len:
        return None, f"{name}: signal too short ({len(ref)} samples < {int(min_len)})"
    if _is_silent(ref):
        # pystoi would score silence against silence instead of refusing it.
        return None, f"{name}: reference is silent (no non-silent frames)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(np.asarray(ref), np.asarray(est), fs, extended=extended))
    for w in caught:
        if "not enough" in str(w.message).lower():
            return None, f"{name}: not enough non-silent frames"
    if not np.isfinite(value):
        return None, f"{name}: non-finite value"
    return value, None


def score_item(est, ref, mix, fs, pesq_mode, stoi_extended=True, enhance=False, permute=None):
    """All metrics of one utterance as a JSON-ready dict.

    ``est``/``ref``: (K, L), ``mix``: (L,) numpy. Separation resolves the order
    by SI-SIR (``permute``, default ``not enhance``; False for labelled outputs);
    enhancement (``enhance``) keeps the order and reports the first source only
    (the clean speech; the others still act as interferers for SI-SIR). Lists are
    indexed like the references. Metrics that cannot be computed are None and listed
    in ``missing`` with the reason.
    """
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    mix = np.asarray(mix, dtype=np.float64)
    k_out = 1 if enhance else ref.shape[0]
    stoi_name = "estoi" if stoi_extended else "stoi"
    fields = ("si_sdr", "si_sir", "si_sar", "pesq", stoi_name, "si_sdr_improvement")
    out = {f: [None] * k_out for f in fields}
    out["missing"] = []
    mix_sdr = si_sdr(torch.from_numpy(np.broadcast_to(mix, ref.shape).copy()),
                     torch.from_numpy(ref)).tolist()
    out["mix_si_sdr"] = mix_sdr[:k_out]

    bad = ~np.isfinite(est)
    if bad.any():
        # A sampler that diverged: nothing about this estimate is meaningful.
        out["perm"] = None
        out["nonfinite"] = {"nan": int(np.isnan(est).sum()), "inf": int(np.isinf(est).sum())}
        reason = f"estimate has {out['nonfinite']['nan']} NaN and {out['nonfinite']['inf']} inf"
        out["missing"] = [{"metric": f, "source": k, "reason": reason}
                          for f in fields for k in range(k_out)]
        return out

    bss = si_bss_eval(est, ref, permute=(not enhance) if permute is None else permute)
    perm = bss["perm"]
    out["perm"] = perm[:k_out].tolist()
    for f in ("si_sdr", "si_sir", "si_sar"):
        out[f] = bss[f][:k_out].tolist()
    out["si_sdr_improvement"] = [s - m for s, m in zip(out["si_sdr"], out["mix_si_sdr"])]
    for k in range(k_out):
        matched = est[perm[k]]
        for name, fn in (("pesq", lambda e, r: pesq_score(e, r, fs, pesq_mode)),
                         (stoi_name, lambda e, r: stoi_score(e, r, fs, stoi_extended))):
            value, reason = fn(matched, ref[k])
            out[name][k] = value
            if reason is not None:
                out["missing"].append({"metric": name, "source": k, "reason": reason})
    return out

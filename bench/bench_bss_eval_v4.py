"""Time evaluation.bss_eval_v4 against museval's BSS Eval v4 on the same signals.

Usage: python bench/bench_bss_eval_v4.py [--seconds 30] [--fs 44100] [--stems 4]
[--channels 2] [--no-museval]

Signals are synthetic music-like stems (sparse percussive clicks, a low-passed
"bass", broadband "other", a "vocals" stem silent for the first 3 s so some
windows are NaN); estimates add filtered leakage from the other stems and noise.
"""

import argparse
import importlib.util
import os
import time

import numpy as np
from scipy.signal import lfilter

from evaluation.bss_eval_v4 import bss_eval_v4

METRICS = ("sdr", "isr", "sir", "sar")


def load_museval_metrics():
    """museval.metrics without the package __init__ (which needs ffmpeg)."""
    spec = importlib.util.find_spec("museval")
    if spec is None:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "metrics.py")
    mod_spec = importlib.util.spec_from_file_location("museval_metrics", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def make_stems(n_sources: int, n: int, n_ch: int, fs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n_sources, n, n_ch))
    poles = [0.0, 0.995, 0.6, 0.3]  # drums (sparse), bass (dark), other, vocals
    refs = np.empty_like(white)
    for j in range(n_sources):
        sig = white[j]
        if j % 4 == 0:
            sig = sig * (rng.random((n, 1)) < 0.002)  # clicks
            sig = lfilter([1.0], [1.0, -0.97], sig, axis=0)
        refs[j] = lfilter([1.0], [1.0, -poles[j % 4]], sig, axis=0)
        refs[j] /= np.std(refs[j])
    if n_sources >= 4:
        refs[3, : 3 * fs] = 0.0  # vocals enter after 3 s
    leak = lfilter([0.3, 0.2, -0.1], [1.0], np.roll(refs, 1, axis=0), axis=1)
    ests = lfilter([0.9, 0.2], [1.0], refs, axis=1) + leak
    ests += 0.05 * rng.standard_normal(ests.shape)
    return refs, ests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fs", type=int, default=44100)
    parser.add_argument("--stems", type=int, default=4)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--filter-len", type=int, default=512)
    parser.add_argument("--no-museval", action="store_true")
    args = parser.parse_args()

    n = int(args.seconds * args.fs)
    refs, ests = make_stems(args.stems, n, args.channels, args.fs)
    print(
        f"{args.stems} stems x {args.channels} ch, {args.seconds:g} s at {args.fs} Hz, "
        f"win = hop = {args.fs} samples, filter_len = {args.filter_len}"
    )

    t0 = time.perf_counter()
    ours = bss_eval_v4(refs, ests, args.fs, args.fs, args.filter_len)
    t_ours = time.perf_counter() - t0

    module = None if args.no_museval else load_museval_metrics()
    if module is None:
        print(f"ours: {t_ours:.2f} s (museval not run)")
        return
    t0 = time.perf_counter()
    out = module.bss_eval(
        refs,
        ests,
        window=args.fs,
        hop=args.fs,
        compute_permutation=False,
        filters_len=args.filter_len,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    t_ref = time.perf_counter() - t0
    theirs = dict(zip(METRICS, out[:4]))

    print(f"{'':8s}{'ours':>10s}{'museval':>10s}")
    print(f"{'time s':8s}{t_ours:10.2f}{t_ref:10.2f}   speed-up x{t_ref / t_ours:.1f}")
    for key in METRICS:
        same_nan = np.array_equal(np.isnan(ours[key]), np.isnan(theirs[key]))
        diff = np.nanmax(np.abs(ours[key] - theirs[key]))
        med_o, med_t = np.nanmedian(ours[key], axis=1), np.nanmedian(theirs[key], axis=1)
        print(
            f"{key:8s} max |diff| {diff:.2e} dB, NaN windows equal: {same_nan}, "
            f"track medians ours {np.round(med_o, 3)} museval {np.round(med_t, 3)}"
        )


if __name__ == "__main__":
    main()

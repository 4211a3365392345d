"""Separation metrics, at the bottom of the package graph: `models/` and `evaluation/`
both use them.

`metrics.separation`: SI-SDR / SI-SIR / SI-SAR with the source permutation resolved,
PESQ and ESTOI wrappers that report failures instead of raising, `score_item`.
"""

from metrics.separation import (
    best_permutation,
    default_pesq_mode,
    pairwise_si_sdr,
    pesq_score,
    pesq_target_fs,
    pit_si_sdr,
    score_item,
    si_bss_eval,
    si_sdr,
    stoi_score,
)

__all__ = [
    "best_permutation", "default_pesq_mode", "pairwise_si_sdr", "pesq_score", "pesq_target_fs",
    "pit_si_sdr", "score_item", "si_bss_eval", "si_sdr", "stoi_score",
]

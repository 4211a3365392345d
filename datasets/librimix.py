"""LibriMix loader (Libri2Mix / Libri3Mix, clean or noisy mixtures).

The targets are always the K speakers. With `mixture="both"` the mixture also
contains the noise, so it is not the sum of the targets and is never checked.
"""

from __future__ import annotations

from pathlib import Path

from datasets.audio import require_dir
from datasets.wsj0_mix import ParallelFolderMix
from sdes.base import renamed_argument

LIBRIMIX_LAYOUT = (
    "{root}/Libri{2,3}Mix/wav{8,16}k/{min,max}/{train-100,train-360,dev,test}/"
    "{mix_clean,mix_both,mix_single,s1,s2[,s3],noise}/<name>.wav"
)
SPLITS = ("train-100", "train-360", "dev", "test")
MIX_FOLDERS = {"clean": "mix_clean", "both": "mix_both"}
EVAL_MIXTURES = {"libri-clean": "clean", "libri-noisy": "both"}


class LibriMix(ParallelFolderMix):
    """LibriMix in its published layout `LIBRIMIX_LAYOUT`.

    Crops as in `WSJ0Mix`: `max_len_s` random windows on the training splits
    (zero-padded when shorter), from the start elsewhere; None = whole files.
    `n_sources` (K) was called `n_spkr`, still accepted as a deprecated alias.
    """

    @renamed_argument("n_spkr", "n_sources")
    def __init__(
        self,
        root: str | Path = "data/LibriMix",
        n_sources: int = 2,
        fs: int = 8000,
        cut: str = "min",
        split: str = "train-360",
        mixture: str = "clean",
        max_len_s: float | None = None,
        max_n_samples: int | None = None,
        check_sum: bool = False,
        sum_tol: float = 1e-3,
        random_crop: bool | None = None,
    ):
        if n_sources not in (2, 3):
            raise ValueError(f"n_sources must be 2 or 3, got {n_sources}")
        if fs not in (8000, 16000):
            raise ValueError(f"fs must be 8000 or 16000 for LibriMix, got {fs}")
        if cut not in ("min", "max"):
            raise ValueError(f"cut must be 'min' or 'max', got {cut!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if mixture not in MIX_FOLDERS:
            raise ValueError(f"mixture must be 'clean' or 'both', got {mixture!r}")
        if mixture == "both" and check_sum:
            raise ValueError("mix_both contains noise: it is not the sum of the speakers")
        base = Path(root) / f"Libri{n_sources}Mix" / f"wav{fs // 1000}k" / cut / split
        require_dir(base, LIBRIMIX_LAYOUT)
        names = [f"s{i + 1}" for i in range(n_sources)]
        super().__init__(
            mix_dir=base / MIX_FOLDERS[mixture],
            src_dirs=[base / n for n in names],
            source_names=names,
            fs=fs,
            layout=LIBRIMIX_LAYOUT,
            max_len_s=max_len_s,
            max_n_samples=max_n_samples,
            random_crop=split.startswith("train") if random_crop is None else random_crop,
            check_sum=check_sum,
            sum_tol=sum_tol,
        )
        self.split = split
        self.mixture = mixture


@renamed_argument("n_spkr", "n_sources")
def librimix_eval_dataset(
    name: str,
    root: str | Path = "data/LibriMix",
    n_sources: int = 2,
    fs: int = 8000,
    cut: str = "min",
    max_n_samples: int | None = None,
) -> LibriMix:
    """Test split for an evaluation name: "libri-clean" (mix_clean) or "libri-noisy" (mix_both)."""
    if name not in EVAL_MIXTURES:
        raise ValueError(f"unknown LibriMix evaluation set {name!r}; use {list(EVAL_MIXTURES)}")
    return LibriMix(
        root=root,
        n_sources=n_sources,
        fs=fs,
        cut=cut,
        split="test",
        mixture=EVAL_MIXTURES[name],
        max_n_samples=max_n_samples,
    )

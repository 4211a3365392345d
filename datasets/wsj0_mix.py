"""WSJ0-2mix / 3mix loader, and the parallel-folders base it shares with LibriMix.

A parallel-folders corpus has one mixture folder and one folder per source,
holding files with the same names. Training crops are random windows of
`max_len_s` seconds; utterances shorter than the crop are zero-padded at the
end (padding keeps mixture = sum of sources and adds no repeated speech).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from datasets.audio import (
    DatasetError,
    audio_info,
    check_info,
    check_sum,
    fit_length,
    list_audio,
    random_start,
    read_audio,
    require_complete_corpus,
    require_dir,
    require_same_names,
    to_item,
)
from sdes.base import renamed_argument

WSJ0_LAYOUT = "{root}/{2,3}speakers/wav{8,16}k/{min,max}/{tr,cv,tt}/{mix,s1,s2[,s3]}/<name>.wav"


class ParallelFolderMix(Dataset):
    """Items (mix (1, L), tgt (K, L)) read from a mixture folder and K source folders.

    `random_crop` picks the crop offset at random (training); otherwise the crop
    starts at the beginning of the file, so the items never change.
    """

    def __init__(
        self,
        mix_dir: str | Path,
        src_dirs: list[str | Path],
        source_names: list[str],
        fs: int,
        layout: str,
        max_len_s: float | None = None,
        max_n_samples: int | None = None,
        random_crop: bool = True,
        check_sum: bool = False,
        sum_tol: float = 1e-3,
    ):
        self.fs = int(fs)
        self.source_names = list(source_names)
        self.n_sources = len(self.source_names)
        self.mix_dir = Path(mix_dir)
        self.src_dirs = [Path(d) for d in src_dirs]
        for d in self.src_dirs:
            require_dir(d, layout)
        names = list_audio(self.mix_dir, layout)
        if max_n_samples is not None:
            names = names[: int(max_n_samples)]
        for d in self.src_dirs:
            require_same_names(names, d)
        self.names = names
        self.crop = None if max_len_s is None else int(round(max_len_s * self.fs))
        if self.crop is not None and self.crop <= 0:
            raise ValueError(f"max_len_s must be positive, got {max_len_s}")
        self.random_crop = bool(random_crop)
        self.check_sum = bool(check_sum)
        self.sum_tol = float(sum_tol)

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, idx: int) -> list[Path]:
        """Mixture path followed by the source paths of item `idx`."""
        fname = self.names[idx] + ".wav"
        return [self.mix_dir / fname] + [d / fname for d in self.src_dirs]

    def _window(self, length: int) -> tuple[int, int]:
        if self.crop is None or length <= self.crop:
            return 0, length
        start = random_start(length, self.crop) if self.random_crop else 0
        return start, start + self.crop

    def __getitem__(self, idx: int):
        paths = self.paths(idx)
        infos = [audio_info(p) for p in paths]
        for p, info in zip(paths, infos):
            check_info(p, info, fs=self.fs, channels=1)
        length = infos[0].frames
        for p, info in zip(paths[1:], infos[1:]):
            if info.frames != length:
                raise DatasetError(
                    f"sources of different lengths: {p} has {info.frames} samples, "
                    f"mixture {paths[0]} has {length}"
                )
        start, stop = self._window(length)
        sigs = [read_audio(p, start, stop)[0] for p in paths]
        mix, tgt = sigs[0][None], np.stack(sigs[1:])
        if self.check_sum:
            check_sum(mix, tgt, paths[0], self.sum_tol)
        if self.crop is not None:
            mix, tgt = fit_length(mix, self.crop), fit_length(tgt, self.crop)
        return to_item(mix, tgt)


class WSJ0Mix(ParallelFolderMix):
    """WSJ0-2mix / 3mix in the layout `WSJ0_LAYOUT` (files at rate `fs`, mono).

    `max_len_s` crops every item (random offset when `random_crop`, which
    defaults to True for the `tr` split only); None keeps whole utterances.
    `max_n_samples` keeps the first N names in sorted order. A generated corpus whose
    manifest says incomplete is refused unless `allow_incomplete`. `n_sources` (K, the
    `{K}speakers` folder) was called `n_spkr`, still accepted as a deprecated alias.
    """

    @renamed_argument("n_spkr", "n_sources")
    def __init__(
        self,
        root: str | Path = "data/wsj0_mix",
        n_sources: int = 2,
        fs: int = 8000,
        cut: str = "min",
        split: str = "tr",
        max_len_s: float | None = None,
        max_n_samples: int | None = None,
        mix_dir: str = "mix",
        check_sum: bool = False,
        sum_tol: float = 1e-3,
        random_crop: bool | None = None,
        allow_incomplete: bool = False,
    ):
        if n_sources not in (2, 3):
            raise ValueError(f"n_sources must be 2 or 3, got {n_sources}")
        if fs not in (8000, 16000):
            raise ValueError(f"fs must be 8000 or 16000 for WSJ0-mix, got {fs}")
        if cut not in ("min", "max"):
            raise ValueError(f"cut must be 'min' or 'max', got {cut!r}")
        if split not in ("tr", "cv", "tt"):
            raise ValueError(f"split must be 'tr', 'cv' or 'tt', got {split!r}")
        require_complete_corpus(Path(root) / f"{n_sources}speakers", allow_incomplete)
        base = Path(root) / f"{n_sources}speakers" / f"wav{fs // 1000}k" / cut / split
        require_dir(base, WSJ0_LAYOUT)
        names = [f"s{i + 1}" for i in range(n_sources)]
        super().__init__(
            mix_dir=base / mix_dir,
            src_dirs=[base / n for n in names],
            source_names=names,
            fs=fs,
            layout=WSJ0_LAYOUT,
            max_len_s=max_len_s,
            max_n_samples=max_n_samples,
            random_crop=(split == "tr") if random_crop is None else random_crop,
            check_sum=check_sum,
            sum_tol=sum_tol,
        )
        self.split = split

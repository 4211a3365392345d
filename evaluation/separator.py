"""Demucs-style ``Separator``: separate a recording (file or tensor) with a DiffSep model.

The input may have any sample rate (resampled to the model's with soxr and back), any
number of channels (each channel is separated on its own and the stems keep the input's
channels; ``mono=True`` downmixes first) and any length: it is read in blocks and
separated in overlapping segments by :class:`evaluation.overlap_add.OverlapAdd`, so
memory does not grow with the length. Scale: the model normalises each segment
internally and returns estimates in the segment's scale; each segment's estimates are
then least-squares scaled per channel so that their sum best matches the mixture.
Files are written to temporary names and renamed only once complete.
"""

import errno
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from tqdm import tqdm

from evaluation.overlap_add import OverlapAdd
from sdes import SAMPLER_DEFAULTS

DEFAULT_TEMPLATE = "{source}/{track}.wav"  # unlabelled sources (speakers): one folder each
STEM_TEMPLATE = "{track}/{source}.wav"  # labelled stems: a folder per track (drums.wav, ...)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
SAMPLER_OPTIONS = tuple(SAMPLER_DEFAULTS)
# Sources named s1, s2, ... are speakers in arbitrary order: their order needs re-matching.
_SPEAKER_NAME = re.compile(r"s\d+")
MIN_INPUT_S = 0.05  # shorter inputs carry too little to separate (a 1-sample std is 0)
# Temporary output files: `.<name>.<pid>.partial`, renamed into place when complete.
_PARTIAL = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.partial")


def labelled_sources(model) -> bool:
    """True when output k of ``model`` always is source ``source_names[k]``.

    A DiffSep model says so itself (``labelled_sources``: trained with a fixed source
    order, e.g. the music stems); for other objects, names other than ``s1..sK`` mean
    labelled sources.
    """
    flag = getattr(model, "labelled_sources", None)
    if flag is not None:
        return bool(flag)
    return not all(_SPEAKER_NAME.fullmatch(n) for n in model.source_names)


def default_template(labelled: bool) -> str:
    return STEM_TEMPLATE if labelled else DEFAULT_TEMPLATE


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out_dir) -> list[Path]:
    """Delete temporary outputs left by separations that were killed (their process is
    gone); files of a separation still running are kept. Returns what was removed."""
    out_dir = Path(out_dir)
    removed = []
    if not out_dir.is_dir():
        return removed
    for p in out_dir.rglob(".*.partial"):
        m = _PARTIAL.fullmatch(p.name)
        if m and not _pid_alive(int(m.group("pid"))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _check_finite(x: np.ndarray, what: str, offset: int, sr: int) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = offset + int(np.argmax(bad.any(axis=-1) if x.ndim > 1 else bad))
        raise ValueError(
            f"{what} has {int(bad.sum())} non-finite sample(s) (NaN or inf), the first at "
            f"{first / sr:.3f} s; repair or trim the file")


def n_segments(length: int, segment: int, hop: int) -> int:
    """Number of segments :class:`OverlapAdd` uses for ``length`` samples."""
    if length <= 0:
        return 0
    return 1 if length <= segment else 1 + math.ceil((length - segment) / hop)


SEGMENT_S = 4.0  # default segment of unlabelled sources (speech)
MUSIC_SEGMENT_S = 10.0  # default segment of labelled stems (music: bars of context)


class Separator:
    """Separate recordings with ``model`` (any object with ``fs``, ``n_sources``,
    ``source_names`` and ``separate(mix (B, 1, L), ..., generator=) -> (est, nfe, _)``).

    Args:
        segment: segment length in seconds (at the model's rate); ``None``:
            MUSIC_SEGMENT_S for labelled stems, SEGMENT_S otherwise.
        overlap: fraction of a segment shared with its neighbour.
        batch_size: (channel, segment) excerpts per sampler call.
        mono: downmix to mono before separating (stems are then mono).
        rematch: re-match the source order between segments; ``None`` does it for
            unlabelled sources (speakers, or a model trained with PIT) and not for
            labelled ones (fixed stems), see :func:`labelled_sources`. Unlabelled outputs
            are named ``s1..sK`` whatever the model's names.
        rescale: least-squares scale each segment's estimates to the mixture.
        seed: seed of the sampler noise, reset for every input (``None``: random).
        device: where the model runs (default: where its parameters are, else CPU).
        block: frames read from a file at a time.
        progress: show a tqdm bar per input.
        **sampler: ``N``, ``snr``, ``corrector_steps``, ``denoise``, ``schedule``,
            ``predictor``, ``corrector`` for ``model.separate`` (``None``: model default).
    """

    def __init__(
        self,
        model,
        *,
        segment: float | None = None,
        overlap: float = 0.25,
        batch_size: int = 4,
        mono: bool = False,
        rematch: bool | None = None,
        rescale: bool = True,
        seed: int | None = 0,
        device: str | torch.device | None = None,
        block: int = 65536,
        progress: bool = False,
        **sampler,
    ):
        unknown = set(sampler) - set(SAMPLER_OPTIONS)
        if unknown:
            raise TypeError(f"unknown sampler options {sorted(unknown)}")
        self.model = model
        self.sampler = {k: v for k, v in sampler.items() if v is not None}
        self.fs = int(model.fs)
        self.n_sources = int(model.n_sources)
        if len(model.source_names) != self.n_sources:
            raise ValueError("model.source_names does not have n_sources names")
        self.labelled = labelled_sources(model)
        # Unlabelled outputs come in any order: a stem name would be a guess.
        self.source_names = list(model.source_names) if self.labelled else [
            f"s{k + 1}" for k in range(self.n_sources)]
        self.filename = default_template(self.labelled)
        if segment is None:
            segment = MUSIC_SEGMENT_S if self.labelled else SEGMENT_S
        self.segment = int(round(segment * self.fs))
        self.overlap = overlap
        self.batch_size = batch_size
        self.mono = mono
        if rematch is None:
            rematch = not self.labelled
        self.rematch = rematch
        self.rescale = rescale
        # Fail now, not on the first file, on impossible chunking options.
        OverlapAdd(self._separate_segments, self.n_sources, self.segment, overlap, 1, rematch)
        self.seed = seed
        if device is None:
            params = model.parameters() if hasattr(model, "parameters") else iter(())
            device = next(params, torch.empty(0)).device
        self.device = torch.device(device)
        self.block = block
        self.progress = progress
        self._generator: torch.Generator | None = None
        self.nfe = 0  # network evaluations of the last sampler call

    @classmethod
    def from_checkpoint(cls, path, device=None, **kwargs) -> "Separator":
        """Load a trained checkpoint (EMA weights) with ``models.loading.load_model``."""
        from models.loading import load_model  # imported late: heavy, optional for fakes

        device = device or default_device()
        return cls(load_model(path, device), device=device, **kwargs)

    def _separate_segments(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            est, nfe, _ = self.model.separate(
                x.to(self.device), generator=self._generator, **self.sampler
            )
        self.nfe = int(nfe)
        return est.to("cpu", torch.float32)

    def _reset_generator(self) -> None:
        self._generator = None
        if self.seed is not None:
            self._generator = torch.Generator(device=self.device).manual_seed(self.seed)

    def _run(
        self,
        blocks: Iterable[np.ndarray],
        sr: int,
        channels: int,
        frames: int,
        write: Callable[[np.ndarray], None],
        desc: str = "",
        what: str = "the input",
    ) -> None:
        """Separate ``(n, channels)`` blocks at rate ``sr``; ``write`` gets ``(m, K, C)``.

        Exactly ``frames`` output frames are written (resampling may be off by a few).
        """
        C = 1 if self.mono else channels
        K = self.n_sources
        self._reset_generator()
        ola_batch = max(1, self.batch_size // C)
        ola = OverlapAdd(
            self._separate_segments, K, self.segment, self.overlap, ola_batch,
            self.rematch, self.rescale,
        )  # fmt: skip
        n_model = math.ceil(frames * self.fs / sr)
        bar = tqdm(
            total=n_segments(n_model, self.segment, ola.hop), desc=desc, unit="seg",
            disable=not self.progress, leave=False,
        )  # fmt: skip
        ola.on_segments = bar.update
        resample = sr != self.fs
        down = soxr.ResampleStream(sr, self.fs, C, dtype="float32") if resample else None
        up = soxr.ResampleStream(self.fs, sr, K * C, dtype="float32") if resample else None
        written = 0

        def emit(out: np.ndarray, last: bool) -> None:
            nonlocal written
            y = np.ascontiguousarray(out.transpose(2, 1, 0).reshape(-1, K * C))
            if up is not None:
                y = up.resample_chunk(y, last=last)
            y = y.reshape(-1, K, C)[: frames - written]
            if len(y):
                write(y)
                written += len(y)

        if frames < MIN_INPUT_S * sr:
            raise ValueError(f"{what} is too short to separate: {frames} "
                             f"sample(s) at {sr} Hz, at least {MIN_INPUT_S} s is needed")
        seen = 0
        for block in blocks:
            x = np.asarray(block, dtype=np.float32)
            _check_finite(x, what, seen, sr)
            seen += len(x)
            if self.mono:
                x = x.mean(axis=1, keepdims=True)
            if down is not None:
                x = down.resample_chunk(np.ascontiguousarray(x), last=False)
            emit(ola.push(x.T), last=False)
        tail = np.zeros((0, C), np.float32)
        if down is not None:
            tail = down.resample_chunk(tail, last=True)
        emit(np.concatenate([ola.push(tail.T), ola.flush()], axis=-1), last=True)
        bar.close()
        if written < frames:
            write(np.zeros((frames - written, K, C), np.float32))

    def separate_tensor(self, wav, sr: int | None = None) -> dict[str, torch.Tensor]:
        """Separate ``wav`` (``(L,)`` or ``(C, L)``, rate ``sr``, default the model's).

        Returns ``{source_name: (C, L)}`` at rate ``sr`` (``C = 1`` with ``mono``).
        """
        wav = torch.as_tensor(wav, dtype=torch.float32)
        if wav.dim() == 1:
            wav = wav[None]
        sr = self.fs if sr is None else int(sr)
        frames_first = wav.T.contiguous().numpy()
        chunks = []
        blocks = (frames_first[i : i + self.block] for i in range(0, len(frames_first), self.block))
        self._run(blocks, sr, wav.shape[0], wav.shape[1], chunks.append)
        C = 1 if self.mono else wav.shape[0]
        out = np.concatenate(chunks) if chunks else np.zeros((0, self.n_sources, C), np.float32)
        return {n: torch.from_numpy(out[:, k].T.copy()) for k, n in enumerate(self.source_names)}

    def output_paths(
        self, out_dir, track: str, filename: str | None = None, trackext: str = ""
    ) -> list[Path]:
        """Output path of every source; the template fields are ``{track}`` (input name
        without extension, with its sub-folder for folder inputs), ``{trackext}`` (input
        extension) and ``{source}`` (alias ``{stem}``). The default template is
        ``{track}/{source}.wav`` for labelled stems, ``{source}/{track}.wav`` otherwise."""
        filename = filename or self.filename
        fields = {"track": track, "trackext": trackext}
        paths = [
            Path(out_dir) / filename.format(source=n, stem=n, **fields) for n in self.source_names
        ]
        if len(set(paths)) != len(paths):
            raise ValueError(f"filename template {filename!r} gives the same path to two sources")
        return paths

    def separate_file(
        self,
        path,
        out_dir,
        filename: str | None = None,
        track: str | None = None,
        subtype: str | None = None,
    ) -> list[Path]:
        """Separate the audio file ``path`` into ``out_dir`` following ``filename``.

        Stems have the input's rate, length and channels (1 with ``mono``); WAV stems are
        32-bit float unless ``subtype`` says otherwise (e.g. ``PCM_16``, clipped).
        Nothing is left behind if this fails. Returns the written paths.
        """
        path = Path(path)
        track = path.stem if track is None else track
        tmps: list[Path] = []
        writers: list[sf.SoundFile] = []
        with sf.SoundFile(path) as f:
            targets = self.output_paths(out_dir, track, filename, path.suffix.lstrip("."))
            fmt = targets[0].suffix.lstrip(".").upper()
            if fmt not in sf.available_formats():
                raise ValueError(f"cannot write {targets[0].suffix!r} files")
            subtype = subtype or ("FLOAT" if fmt == "WAV" else sf.default_subtype(fmt))
            if not sf.check_format(fmt, subtype):
                raise ValueError(f"subtype {subtype} is not valid for {fmt}")
            clip = subtype.startswith("PCM") or fmt in ("FLAC", "OGG")
            C = 1 if self.mono else f.channels
            try:
                for t in targets:
                    t.parent.mkdir(parents=True, exist_ok=True)
                    tmps.append(t.with_name(f".{t.name}.{os.getpid()}.partial"))
                    writers.append(
                        sf.SoundFile(tmps[-1], "w", f.samplerate, C, subtype, format=fmt)
                    )

                def write(y: np.ndarray) -> None:
                    if not np.isfinite(y).all():
                        raise RuntimeError(f"the separation of {path} produced non-finite "
                                           "samples; nothing was written")
                    if clip:  # integer formats would wrap around otherwise
                        y = np.clip(y, -1.0, 1.0)
                    for k, w in enumerate(writers):
                        w.write(np.ascontiguousarray(y[:, k]))

                blocks = _read_blocks(f, self.block)
                self._run(blocks, f.samplerate, f.channels, f.frames, write, desc=track,
                          what=str(path))  # fmt: skip
                for w in writers:
                    w.close()
                for tmp, t in zip(tmps, targets):
                    os.replace(tmp, t)
            except BaseException as e:
                for w in writers:
                    try:
                        w.close()
                    except Exception:  # a full disk can fail the close too
                        pass
                for tmp in tmps:
                    tmp.unlink(missing_ok=True)
                if isinstance(e, Exception) and _disk_full(targets[0].parent):
                    raise OSError(errno.ENOSPC, f"no space left on device while writing "
                                  f"{targets[0].parent}; nothing was written") from e
                raise
        return targets


def _disk_full(folder: Path, margin: int = 1 << 20) -> bool:
    """True when `folder`'s file system has (almost) no space left."""
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def _read_blocks(f: sf.SoundFile, n: int):
    """Yield ``(n, channels)`` float32 blocks until the end of ``f``."""
    while True:
        block = f.read(n, dtype="float32", always_2d=True)
        if not len(block):
            return
        yield block


def collect_inputs(path, recursive: bool = False, exclude=None) -> list[tuple[Path, str]]:
    """Audio files to separate, with their track names.

    A file gives itself; a folder gives its ``.wav/.flac/.ogg`` files (in sub-folders too
    with ``recursive``), named by their path relative to the folder without extension.
    Files under ``exclude`` (e.g. the output folder) are skipped.
    """
    path = Path(path)
    if path.is_file():
        return [(path, path.stem)]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    exclude = Path(exclude).resolve() if exclude is not None else None
    files = path.rglob("*") if recursive else path.iterdir()
    out = []
    for p in sorted(files):
        if not p.is_file() or p.suffix.lower() not in AUDIO_EXTENSIONS or p.name.startswith("."):
            continue
        if exclude is not None and p.resolve().is_relative_to(exclude):
            continue
        out.append((p, p.relative_to(path).with_suffix("").as_posix()))
    return out

"""Audio examples of an evaluation run: mixture, estimates, references, figure."""

from pathlib import Path

import numpy as np
import soundfile as sf


def _write(path, x, fs):
    x = np.asarray(x, dtype=np.float32)
    sf.write(path, x.T if x.ndim == 2 else x, fs, subtype="FLOAT")  # (C, L) -> frames first


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def save_sample(folder, index, name, fs, mix, est, ref, source_names, intermediates=None):
    """Write `{index:04d}_{name}/` with mix.wav, est_*.wav, ref_*.wav and reverse.png.

    ``est`` (K, L) is already in the order of ``ref``; files are 32-bit float WAV
    so that estimates louder than full scale are not clipped. Multichannel items
    (``mix`` (C, L), ``est``/``ref`` (K, C, L)) give multichannel files. Returns the
    folder.
    """
    out = Path(folder) / f"{index:04d}_{_safe(name)}"
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "mix.wav", mix, fs)
    for k, src in enumerate(source_names):
        _write(out / f"est_{_safe(src)}.wav", est[k], fs)
        _write(out / f"ref_{_safe(src)}.wav", ref[k], fs)
    if intermediates:
        # matplotlib is imported only when a figure is drawn (slow import per worker).
        from evaluation.figures import plot_reverse_process

        plot_reverse_process(intermediates, ref, fs, out / "reverse.png", source_names)
    return out

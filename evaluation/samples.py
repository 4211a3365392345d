"""Audio examples of an evaluation run: mixture, estimates, references, figure."""

from pathlib import Path

import numpy as np
import soundfile as sf


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def save_sample(folder, index, name, fs, mix, est, ref, source_names, intermediates=None):
    """Write `{index:04d}_{name}/` with mix.wav, est_*.wav, ref_*.wav and reverse.png.

    ``est`` (K, L) is already in the order of ``ref``; files are 32-bit float WAV
    so that estimates louder than full scale are not clipped. Returns the folder.
    """
    out = Path(folder) / f"{index:04d}_{_safe(name)}"
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "mix.wav", np.asarray(mix, dtype=np.float32), fs, subtype="FLOAT")
    for k, src in enumerate(source_names):
        sf.write(out / f"est_{_safe(src)}.wav", np.asarray(est[k], np.float32), fs,
                 subtype="FLOAT")
        sf.write(out / f"ref_{_safe(src)}.wav", np.asarray(ref[k], np.float32), fs,
                 subtype="FLOAT")
    if intermediates:
        # matplotlib is imported only when a figure is drawn (slow import per worker).
        from evaluation.figures import plot_reverse_process

        plot_reverse_process(intermediates, ref, fs, out / "reverse.png", source_names)
    return out

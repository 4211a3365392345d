"""Figure of the reverse process: spectrograms of the sampler state over time."""

import matplotlib

matplotlib.use("Agg")  # headless: evaluation runs on servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def log_spectrogram(x, fs, n_fft=None):
    """Magnitude in dB (F, T) of a 1-D signal, with a window of ~32 ms."""
    n_fft = n_fft or max(64, 1 << int(np.log2(0.032 * fs)))
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True).abs()
    return 20 * torch.log10(spec + 1e-6).numpy()


def pick_steps(n, n_show):
    """Indices of `n_show` states spread evenly from the first to the last."""
    if n <= n_show:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, n_show)})


def plot_reverse_process(intermediates, ref, fs, path, source_names=None, n_show=5):
    """Save a PNG grid: one row per source, columns = sampler states, then the reference.

    ``intermediates``: list of ``(t, x (K, L))`` in sampling order (numpy or
    torch), already put in the order of ``ref`` (K, L).
    """
    ref = np.asarray(ref)
    k = ref.shape[0]
    names = source_names or [f"s{i + 1}" for i in range(k)]
    steps = [intermediates[i] for i in pick_steps(len(intermediates), n_show)]
    n_col = len(steps) + 1
    fig, axes = plt.subplots(k, n_col, figsize=(2.2 * n_col, 1.8 * k), squeeze=False,
                             sharex=True, sharey=True)
    ref_specs = [log_spectrogram(r, fs) for r in ref]
    vmax = max(s.max() for s in ref_specs)
    extent = (0, ref.shape[-1] / fs, 0, fs / 2000)
    for col, (t, x) in enumerate(steps + [(None, ref)]):
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
        for row in range(k):
            spec = ref_specs[row] if t is None else log_spectrogram(x[row], fs)
            ax = axes[row, col]
            ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma",
                      vmin=vmax - 80, vmax=vmax)
            if row == 0:
                ax.set_title("reference" if t is None else f"t = {float(t):.3f}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{names[row]}\nkHz", fontsize=8)
            if row == k - 1:
                ax.set_xlabel("s", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

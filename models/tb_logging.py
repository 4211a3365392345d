"""TensorBoard media for validation examples: audio clips and a spectrogram figure."""

import matplotlib

matplotlib.use("Agg")  # headless training nodes: never open a display

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def tensorboard_writer(logger):
    """The SummaryWriter of a TensorBoard logger, or None for any other logger."""
    experiment = getattr(logger, "experiment", None)
    if experiment is None or not hasattr(experiment, "add_audio"):
        return None
    return experiment


def _peak_normalise(x):
    # add_audio clips to [-1, 1]; keep the relative level of each clip readable.
    return x / max(float(x.abs().max()), 1e-8)


def _log_spec(x, n_fft=256):
    win = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x.float(), n_fft, hop_length=n_fft // 4, window=win, return_complex=True)
    return (20 * torch.log10(spec.abs() + 1e-6)).cpu().numpy()


def spectrogram_figure(mix, est, ref, fs, source_names):
    """Figure with the mixture spectrogram, then estimates (left) and references (right)."""
    k = est.shape[0]
    fig, axes = plt.subplots(k + 1, 2, figsize=(10, 2.2 * (k + 1)), squeeze=False)
    mix_spec = _log_spec(mix[0])
    vmax = float(mix_spec.max())
    extent = [0, mix.shape[-1] / fs, 0, fs / 2000]
    kwargs = dict(origin="lower", aspect="auto", extent=extent, vmin=vmax - 80, vmax=vmax)
    axes[0, 0].imshow(mix_spec, **kwargs)
    axes[0, 0].set_title("mixture")
    axes[0, 1].axis("off")
    for i in range(k):
        axes[i + 1, 0].imshow(_log_spec(est[i]), **kwargs)
        axes[i + 1, 0].set_title(f"estimate {source_names[i]}")
        axes[i + 1, 1].imshow(_log_spec(ref[i]), **kwargs)
        axes[i + 1, 1].set_title(f"reference {source_names[i]}")
    for ax in axes[:, 0]:
        ax.set_ylabel("kHz")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    return fig


def log_separation_example(writer, tag, mix, est, ref, fs, source_names, step):
    """Audio of the mixture, each estimate and each reference, plus the figure.

    ``mix`` (1, L), ``est`` and ``ref`` (K, L); estimates already matched to the
    references' order.
    """
    mix, est, ref = (v.detach().float().cpu() for v in (mix, est, ref))
    writer.add_audio(f"{tag}/mix", _peak_normalise(mix[0]), step, sample_rate=fs)
    for i, name in enumerate(source_names):
        writer.add_audio(f"{tag}/est_{name}", _peak_normalise(est[i]), step, sample_rate=fs)
        writer.add_audio(f"{tag}/ref_{name}", _peak_normalise(ref[i]), step, sample_rate=fs)
    fig = spectrogram_figure(mix, est, ref, fs, source_names)
    writer.add_figure(f"{tag}/spectrogram", fig, step, close=True)
    plt.close(fig)

"""Music evaluation (K = 4 stems, stereo, BSS Eval v4) and separate.py with named stems."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

import evaluate
import evaluate_mp
import separate
from evaluation.bss_eval_v4 import bss_eval_v4, track_metrics
from evaluation.music import framewise_sdr
from evaluation.results import ItemStore, format_summary, summarize
from evaluation.runner import MixtureBaseline, Settings, evaluate_indices
from metrics.separation import si_bss_eval
from tests.datasets.corpora import write_wav
from tests.evaluation.toy import assert_same_records, read_results, single_thread

STEMS = ["drums", "bass", "other", "vocals"]
BANDS = [(40, 250), (350, 800), (1000, 1900), (2300, 3600)]  # Hz, one band per stem


def band_stems(n, fs, seed):
    """Stereo stems (4, 2, n): tones inside each stem's band, panned differently."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    out = np.zeros((4, 2, n))
    for k, (lo, hi) in enumerate(BANDS):
        env = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
        sig = sum(np.sin(2 * np.pi * rng.uniform(lo + 30, hi - 30) * t + rng.uniform(0, 6))
                  for _ in range(3)) * env * rng.uniform(0.05, 0.2)
        pan = rng.uniform(0.2, 0.8)
        out[k] = np.stack([pan * sig, (1 - pan) * sig])
    # A little broadband noise keeps the BSS Eval filter estimation well conditioned.
    return (out + 1e-3 * rng.standard_normal(out.shape)).astype(np.float32)


class ToyMusic(torch.utils.data.Dataset):
    """Stereo music items (mix (2, L), stems (4, 2, L)) with the MUSDB18HQ attributes."""

    domain = "music"

    def __init__(self, n_items=2, fs=8000, seconds=2.5):
        self.fs, self.n_sources, self.source_names = fs, 4, list(STEMS)
        self.items = [band_stems(int(seconds * fs), fs, i) for i in range(n_items)]
        self.names = [f"Track {i}" for i in range(n_items)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        tgt = torch.from_numpy(self.items[i])
        return tgt.sum(0), tgt


class BandSplitter:
    """Oracle 'model' with labelled outputs: FFT masks of the stems' bands.

    ``swap`` returns drums and bass in each other's place (a labelling error that a
    fixed-order evaluation must expose).
    """

    labelled_sources = True

    def __init__(self, fs=8000, swap=False):
        self.fs, self.n_sources, self.source_names = fs, 4, list(STEMS)
        self.config, self.exp_name = None, "bands"
        self.order = [1, 0, 2, 3] if swap else [0, 1, 2, 3]
        self.calls = []

    def separate(self, mix, generator=None, intermediate=False, **kwargs):
        self.calls.append(tuple(mix.shape))
        n = mix.shape[-1]
        spec = torch.fft.rfft(mix.double(), dim=-1)
        freqs = torch.fft.rfftfreq(n, 1 / self.fs)
        edges = [0, 300, 900, 2100, self.fs / 2 + 1]
        masks = [(freqs >= lo) & (freqs < hi) for lo, hi in zip(edges[:-1], edges[1:])]
        est = torch.cat([torch.fft.irfft(spec * m, n=n, dim=-1) for m in masks], dim=1)
        return est[:, self.order].float(), 1, None


@pytest.fixture(autouse=True)
def _short_filters(monkeypatch):
    """Shorter BSS Eval distortion filters in-process: the 512-tap Gram matrix of four
    stereo stems takes seconds to factorise, and these tests check the plumbing (the
    filter length is museval's parameter; bss_eval_v4 is checked against museval)."""
    monkeypatch.setattr("evaluation.music.FILTER_LEN", FILTER_LEN)


FILTER_LEN = 32


def window_sdr(ref, est, win):
    """SDR of (K, C, L) stems written out: per window 10 log10(|s|^2 / |s_hat - s|^2),
    median over the full windows."""
    n = ref.shape[-1] // win
    vals = [[10 * np.log10((ref[k, :, i * win:(i + 1) * win] ** 2).sum()
                           / ((est[k, :, i * win:(i + 1) * win] - ref[k, :, i * win:(i + 1) * win])
                              ** 2).sum()) for i in range(max(n, 1))] for k in range(len(ref))]
    return np.median(vals, axis=1)


def run(tmp_path, separator, dataset, settings, name="a"):
    store = ItemStore(tmp_path / name, "test", {"run": name}).open()
    indices = list(range(len(dataset)))
    evaluate_indices(separator, dataset, "test", indices, settings, store, "cpu",
                     sample_dir=tmp_path / name / "samples")
    return store.read(indices)


def test_framewise_sdr_is_the_bss_eval_v4_sdr():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((4, 3000, 2))
    refs[2, 1000:2000] = 0.0  # a silent window: NaN for every source, as in museval
    ests = refs + 0.3 * rng.standard_normal(refs.shape)
    ours = framewise_sdr(refs, ests, 1000, 1000)
    ref = bss_eval_v4(refs, ests, 1000, 1000, filter_len=16)["sdr"]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert np.isnan(ours[:, 1]).all() and np.isfinite(ours[:, [0, 2]]).all()


@pytest.mark.parametrize("fs,segment", [(8000, None), (16000, 1.0)], ids=["whole", "chunked"])
def test_music_records_use_the_stem_order(tmp_path, fs, segment):
    data = ToyMusic(fs=fs)
    oracle = BandSplitter()
    records = run(tmp_path, oracle, data, Settings(N=1, segment=segment))
    # One call per segment with both channels; resampled to the model's 8 kHz.
    n_model = int(2.5 * 8000)
    assert all(c[0] == 2 and c[1:] == (1, min(n_model, 8000 * (segment or 10)))
               for c in oracle.calls)
    for rec, (mix, tgt) in zip(records, data):
        assert rec["status"] == "ok" and rec["source_names"] == STEMS
        assert rec["perm"] == [0, 1, 2, 3] and len(rec["sdr"]) == 4
        assert min(rec["sdr"]) > 15 and min(rec["si_sdr"]) > 15
        assert not {"pesq", "estoi"} & set(rec)  # speech metrics are not computed for music
        ref = tgt.double().numpy()
        mix4 = np.broadcast_to(mix.double().numpy(), ref.shape)
        np.testing.assert_allclose(rec["mix_sdr"], window_sdr(ref, mix4, fs), rtol=1e-9)
        if segment is None:  # whole item at the data rate: the estimate can be redone here
            est = oracle.separate(mix[:, None])[0].double().numpy().transpose(1, 0, 2)
            v4 = track_metrics(ref.transpose(0, 2, 1), est.transpose(0, 2, 1), fs,
                               filter_len=FILTER_LEN)
            for f in ("sdr", "isr", "sir", "sar"):
                np.testing.assert_allclose(rec[f], v4[f], atol=1e-3)  # float32 chunks
            flat = si_bss_eval(est.reshape(4, -1), ref.reshape(4, -1), permute=False)
            np.testing.assert_allclose(rec["si_sdr"], flat["si_sdr"], atol=1e-3)


def test_fixed_order_is_not_permuted_but_pit_can_be_asked_for(tmp_path):
    data = ToyMusic(n_items=1)
    fixed = run(tmp_path, BandSplitter(swap=True), data, Settings(N=1), "fixed")[0]
    assert fixed["perm"] == [0, 1, 2, 3]
    assert max(fixed["sdr"][:2]) < 0 < 15 < min(fixed["sdr"][2:])  # drums <-> bass exposed
    pit = run(tmp_path, BandSplitter(swap=True), data, Settings(N=1, permutation="pit"), "pit")[0]
    assert pit["perm"] == [1, 0, 2, 3] and min(pit["sdr"]) > 15
    # Swapped labels with the stems' samples saved: est_drums.wav holds the bass.
    saved = run(tmp_path, BandSplitter(swap=True), data, Settings(N=1, save_n=1), "saved")[0]
    folder = tmp_path / "saved" / "samples" / "0000_Track_0"
    est, fs = sf.read(folder / "est_drums.wav")
    assert fs == 8000 and est.shape == (20000, 2)
    assert saved["sdr"] == fixed["sdr"]


def test_mixture_baseline_and_summary_table(tmp_path):
    data = ToyMusic(n_items=3)
    base = MixtureBaseline(None, 4, [], None, "mixture")
    records = run(tmp_path, base, data, Settings(no_proc=True))
    for rec in records:
        np.testing.assert_allclose(rec["sdr"], rec["mix_sdr"], atol=1e-9)
        np.testing.assert_allclose(rec["si_sdr_improvement"], 0, atol=1e-6)
    summary = summarize(records, {})
    per = summary["metrics"]["sdr"]["per_source"]
    assert list(per) == STEMS
    for k, name in enumerate(STEMS):  # median over tracks of the per-track medians
        assert per[name]["median"] == pytest.approx(np.median([r["sdr"][k] for r in records]))
    text = format_summary("test", summary)
    assert "median over tracks" in text
    for name in STEMS:
        row = next(line for line in text.splitlines() if line.strip().startswith(name))
        assert f"{per[name]['median']:8.2f}" in row


# ---- scripts on a tiny real checkpoint ------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """MUSDB18-HQ layout, 0.3-s stereo tracks at 44.1 kHz (band-limited tones + noise:
    the ramps of tests/datasets/corpora.py make BSS Eval's Gram matrix singular)."""
    root = tmp_path_factory.mktemp("musdb")
    for split, names in (("train", ["A - One", "B - Two", "C - Three"]),
                         ("test", ["Test X - One", "Test Y - Two"])):
        for i, name in enumerate(names):
            stems = band_stems(13230, 44100, 10 * i + len(split))
            for stem, x in zip(STEMS + ["mixture"], [*stems, stems.sum(0)]):
                write_wav(root / split / name / f"{stem}.wav", x, 44100)
    (root / "manifest.json").write_text(json.dumps({"valid_tracks": ["C - Three"]}))
    return root


def _checkpoint(root, folder, *overrides):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    config_dir = str(evaluate.__file__).rsplit("/", 1)[0] + "/config"
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "experiment=music-demo", f"datamodule.train.root={root}", "name=tinymusic",
            "paths.output_dir=.",
            *overrides])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("hydra", None)
    torch.manual_seed(0)
    model = instantiate(OmegaConf.create(cfg).model)
    with torch.no_grad():  # untrained output layers are ~0: make the output depend on weights
        for p in model.score_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = folder / "tiny.ckpt"
    torch.save({"state_dict": model.state_dict(), "ema": model.ema.state_dict(),
                "diffsep_config": cfg}, path)
    return path


@pytest.fixture(scope="module")
def music_ckpt(corpus, tmp_path_factory):
    # Left channel only at test time: the evaluate_mp worker scores with museval's
    # 512-tap filters, whose Gram matrix is 4x smaller for one channel than for two
    # (stereo items are covered in-process above).
    return _checkpoint(corpus, tmp_path_factory.mktemp("ckpt"), "datamodule.test.channels=left")


@pytest.mark.slow
def test_evaluate_and_evaluate_mp_report_per_stem_metrics(music_ckpt, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.setattr("evaluation.music.FILTER_LEN", 512)  # as the spawned worker
    opts = ["--test", "-N", "2", "--corrector-steps", "0", "--seed", "1", "--save-n", "2"]
    single_thread(evaluate.main, [str(music_ckpt), *opts, "-d", "cpu", "-o", str(tmp_path)])
    folder = tmp_path / "tinymusic_tiny_N-2_snr-0.50_corr-0_den-True_sch-linear"
    records, summary = read_results(folder)
    assert [r["name"] for r in records] == ["Test X - One", "Test Y - Two"]
    for rec in records:
        assert rec["status"] == "ok" and rec["source_names"] == STEMS
        assert rec["perm"] == [0, 1, 2, 3] and rec["nfe"] == 2 + 1  # + the final step
        assert all(len(rec[f]) == 4 for f in ("sdr", "isr", "sir", "sar", "mix_sdr", "si_sdr"))
    ms = summary["metric_settings"]
    assert ms["metrics"] == "music" and ms["permutation"] == "none" and ms["fs"] == 44100
    assert ms["bss_eval"]["win_s"] == 1.0
    assert set(summary["metrics"]["sdr"]["per_source"]) == set(STEMS)
    out = capsys.readouterr().out
    assert all(name in out for name in STEMS) and "median over tracks" in out

    # The records are the metrics of the saved stems (44.1 kHz, as the corpus).
    for rec in records:
        d = folder / "test_samples" / f"{rec['index']:04d}_{rec['name'].replace(' ', '_')}"
        est = np.stack([sf.read(d / f"est_{n}.wav")[0] for n in STEMS])[:, None]  # (4, 1, L)
        ref = np.stack([sf.read(d / f"ref_{n}.wav")[0] for n in STEMS])[:, None]
        assert est.shape == (4, 1, 13230) and sf.info(d / "mix.wav").samplerate == 44100
        np.testing.assert_allclose(rec["sdr"], window_sdr(ref, est, 44100), atol=1e-3)
        flat = si_bss_eval(est[:, 0], ref[:, 0], permute=False)["si_sdr"]
        np.testing.assert_allclose(rec["si_sdr"], flat, atol=1e-3)

    # evaluate_mp gives the same records and a summary with the same per-stem table.
    mp_out = tmp_path / "mp"
    evaluate_mp.main([str(music_ckpt), *opts[1:], "--split", "test", "--workers", "1",
                      "-o", str(mp_out)])
    mp_records, mp_summary = read_results(mp_out / folder.name)
    assert_same_records(records, mp_records, rel=1e-6)
    # Same table; values agree to float tolerance (the worker process runs its own BLAS).
    mp_table = mp_summary["metrics"]["sdr"]["per_source"]
    table = summary["metrics"]["sdr"]["per_source"]
    assert mp_table.keys() == table.keys()
    for name, entry in table.items():
        assert mp_table[name]["n_valid"] == entry["n_valid"]
        assert mp_table[name]["median"] == pytest.approx(entry["median"], rel=1e-6)

    # The mixture baseline on the same data and convention.
    evaluate.main(["__no_proc__", "--config-from", str(music_ckpt), "--test",
                   "-o", str(tmp_path / "base")])
    base, _ = read_results(next((tmp_path / "base").iterdir()))
    for b, rec in zip(base, records):
        np.testing.assert_allclose(b["sdr"], rec["mix_sdr"], rtol=1e-6)


@pytest.mark.slow
def test_separate_writes_named_stems(music_ckpt, tmp_path):
    rng = np.random.default_rng(0)
    song = (0.1 * rng.standard_normal((int(1.3 * 44100), 2))).astype(np.float32)
    sf.write(tmp_path / "song.wav", song, 44100, subtype="PCM_16")
    args = [str(tmp_path / "song.wav"), str(tmp_path / "out"), "--model", str(music_ckpt),
            "-N", "2", "--corrector", "none", "--segment", "0.5", "-d", "cpu"]
    assert single_thread(separate.main, args) == 0
    stems = sorted(p.name for p in (tmp_path / "out" / "song").iterdir())
    assert stems == sorted(f"{n}.wav" for n in STEMS)
    parts = []
    for name in STEMS:
        info = sf.info(tmp_path / "out" / "song" / f"{name}.wav")
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, len(song))
        parts.append(sf.read(tmp_path / "out" / "song" / f"{name}.wav")[0])
    assert all(np.isfinite(p).all() for p in parts)
    assert np.abs(parts[0] - parts[3]).max() > 1e-4  # distinct stems


@pytest.mark.slow
def test_separate_with_a_pit_model_names_sources_generically(corpus, tmp_path):
    ckpt = _checkpoint(corpus, tmp_path, "model.source_order=pit",
                       "model.train_strategy=prior_mismatch_pit")
    sf.write(tmp_path / "song.wav", np.zeros((4000, 2), np.float32) + 0.01, 44100)
    args = [str(tmp_path / "song.wav"), str(tmp_path / "out"), "--model", str(ckpt),
            "-N", "1", "--corrector", "none", "--segment", "0.5", "-d", "cpu"]
    assert single_thread(separate.main, args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s1", "s2", "s3", "s4"]
    assert (tmp_path / "out" / "s1" / "song.wav").is_file()

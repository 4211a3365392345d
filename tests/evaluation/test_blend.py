"""Blending a shipped model with its one-shot partner (models/blend.py): the combination
of two estimates, the partner attached by the loader, the switch that turns it off,
float16 storage, and the partner used alone (separate.py --one-shot)."""

import argparse

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import models.pretrained as pretrained
from evaluation.cli import add_common_args, settings_from_args
from models.blend import combine, fit_to_mixture
from models.loading import HALF_MIN_NUMEL, load_model, write_inference_file
from models.pretrained import export, one_shot_for


def _sources(b, k, n, seed):
    return torch.randn(b, k, n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", [2, 3])
def test_scaled_and_reordered_exact_sources_combine_to_the_sources(k):
    s = _sources(2, k, 4000, seed=k)
    mix = s.sum(1, keepdim=True)
    gains = torch.tensor([0.2, 3.0, 7.0][:k])
    first = s[:, list(range(k))[::-1]] * gains[None, :, None]
    second = s[:, [(i + 1) % k for i in range(k)]] * gains.flip(0)[None, :, None] * 5
    out = combine(first, second, mix)
    assert torch.allclose(out, s[:, list(range(k))[::-1]], atol=1e-5)  # first's order
    assert torch.allclose(fit_to_mixture(second, mix).sum(1, keepdim=True), mix, atol=1e-4)


def test_the_mean_of_two_independent_errors_has_half_the_error_energy():
    s = _sources(8, 2, 16000, seed=10)
    mix = s.sum(1, keepdim=True)
    first = s + 0.1 * _sources(8, 2, 16000, seed=11)
    second = (s + 0.1 * _sources(8, 2, 16000, seed=12))[:, [1, 0]]
    out = combine(first, second, mix, weight=0.5)
    ratio = float((out - s).pow(2).mean()) / float((fit_to_mixture(first, mix) - s).pow(2).mean())
    assert 0.45 < ratio < 0.55
    assert torch.allclose(combine(first, second, mix, weight=1.0), fit_to_mixture(first, mix))
    with pytest.raises(ValueError, match="weight must be in"):
        combine(first, second, mix, weight=1.5)
    with pytest.raises(ValueError, match="cannot be combined"):
        combine(first, second[..., :-1], mix)


@pytest.fixture
def shipped(tiny_ckpt, tmp_path, monkeypatch):
    """A tiny 'shipped' model with a partner in a pretrained folder of its own."""
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setattr(pretrained, "PARTNERS", {"speech-2spk-8k": ("speech-2spk-8k-oneshot",
                                                                      0.3, (1.0,), None)})
    model_path = export(tiny_ckpt, tmp_path / "speech-2spk-8k.ckpt")
    torch.manual_seed(3)
    other = load_model(tiny_ckpt)
    with torch.no_grad():  # weights of their own: another network than the model's
        for p in other.score_model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    write_inference_file(OmegaConf.to_container(other.config, resolve=True), other, {},
                         tmp_path / "speech-2spk-8k-oneshot.ckpt", half=True)
    return model_path


def test_the_loader_attaches_the_partner_and_separate_blends_with_it(shipped):
    model = load_model(shipped)
    assert model.partner is not None and model.partner.weight == 0.3
    alone = load_model(shipped, blend=False)
    assert alone.partner is None
    assert model.state_dict().keys() == alone.state_dict().keys()  # not a submodule
    mix = _sources(2, 1, 3000, seed=4)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    est, nfe, _ = model.separate(mix, N=2, generator=gen())
    raw, raw_nfe, _ = model.separate(mix, N=2, generator=gen(), blend=False)
    assert nfe == raw_nfe + 1
    assert torch.equal(alone.separate(mix, N=2, generator=gen())[0], raw)
    expected = combine(raw, model.partner.estimate(mix), mix, 0.3)
    assert torch.allclose(est, expected, atol=1e-6)
    assert not torch.allclose(est, fit_to_mixture(raw, mix), atol=1e-3)


def test_a_partners_post_filter_filters_the_mean_of_its_views(shipped, monkeypatch):
    from models.postfilter import WienerFilter

    monkeypatch.setitem(pretrained.PARTNERS, "speech-2spk-8k", (
        "speech-2spk-8k-oneshot", 0.3, (1.0, 1.1), {"n_fft": 256, "power": 2.0, "weight": 0.5}))
    model = load_model(shipped)
    partner = model.partner
    assert partner.postfilter == WienerFilter(256, 2.0, 0.5)
    mix = _sources(2, 1, 3000, seed=8)
    plain = partner.with_postfilter(None).estimate(mix)
    filtered = partner.estimate(mix)
    assert torch.allclose(filtered, WienerFilter(256, 2.0, 0.5)(plain, mix), atol=1e-6)
    assert not torch.allclose(filtered, fit_to_mixture(plain, mix), atol=1e-3)
    assert partner.with_postfilter(None).postfilter is None and partner.postfilter is not None
    # the one-shot separator alone and the blend both take the filtered estimate
    assert torch.allclose(one_shot_for(shipped).separate(mix)[0], filtered, atol=1e-6)
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    raw = model.separate(mix, N=2, generator=gen(), blend=False)[0]
    est = model.separate(mix, N=2, generator=gen())[0]
    assert torch.allclose(est, combine(raw, filtered, mix, 0.3), atol=1e-6)


def test_a_checkpoint_of_ones_own_gets_no_partner(tiny_ckpt, shipped):
    assert load_model(tiny_ckpt).partner is None


def test_a_missing_partner_file_says_how_to_go_on(shipped):
    (shipped.parent / "speech-2spk-8k-oneshot.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match="--no-blend"):
        load_model(shipped)
    assert load_model(shipped, blend=False).partner is None


def test_float16_storage_holds_the_rounded_weights(shipped):
    path = shipped.parent / "speech-2spk-8k-oneshot.ckpt"
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    floats = [v for v in raw.values() if v.is_floating_point()]
    assert all(v.dtype == (torch.float16 if v.numel() >= HALF_MIN_NUMEL else torch.float32)
               for v in floats)  # fmt: skip
    assert any(v.dtype == torch.float16 for v in floats)
    net = load_model(shipped).partner.net
    for name, value in net.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, raw[f"score_model.{name}"].float()), name


def test_evaluate_and_separate_have_the_switch():
    import separate

    assert separate.build_parser().parse_args(["in.wav", "out", "--no-blend"]).no_blend
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    assert settings_from_args(parser.parse_args(["model.ckpt", "--no-blend"])).blend is False
    assert settings_from_args(parser.parse_args(["model.ckpt"])).blend is True


def test_evaluation_results_of_the_blend_and_of_the_model_alone_are_kept_apart(tmp_path):
    from evaluation.runner import Settings
    from evaluation.session import EvalSession
    from models.pretrained import DEFAULT_MODEL, PARTNERS, pretrained_path
    from tests.evaluation.toy import toy_items, write_wsj0

    write_wsj0(tmp_path, toy_items(2, 2), split="tt")
    path = str(pretrained_path(DEFAULT_MODEL))
    sessions = [EvalSession(path, Settings(N=1, blend=blend), ["test"],
                            output_dir=tmp_path / "out", data_root=str(tmp_path))
                for blend in (True, False)]  # fmt: skip
    blended, alone = sessions
    assert blended.result_dir.name == alone.result_dir.name + "_blend"
    partner_file, weight, views, postfilter = PARTNERS[DEFAULT_MODEL]
    assert blended.source_id()["partner"]["path"] == str(pretrained_path(partner_file))
    assert blended.source_id()["partner"]["weight"] == weight
    assert blended.source_id()["partner"]["views"] == list(views)
    assert blended.source_id()["partner"]["postfilter"] == {"name": "WienerFilter",
                                                            **postfilter}
    assert "partner" not in alone.source_id() and alone.separator.partner is None
    # the flag itself is no setting of the records: folders written before it still resume
    assert Settings(N=1, blend=False).fingerprint() == Settings(N=1).fingerprint()
    assert "blend" not in Settings(N=1).fingerprint()


def test_silence_and_a_silent_source_give_finite_blends():
    zeros = torch.zeros(2, 2, 1000)
    assert torch.equal(combine(zeros, zeros, torch.zeros(2, 1, 1000)), zeros)
    first = _sources(1, 2, 1000, seed=20)
    first[:, 1] = 0.0  # one output silent: its least-squares coefficient is undetermined
    out = combine(first, _sources(1, 2, 1000, seed=21), first.sum(1, keepdim=True))
    assert torch.isfinite(out).all()


def test_the_one_shot_separator_alone_is_the_partner_and_scale_equivariant(shipped):
    one = one_shot_for(shipped)
    partner = load_model(shipped).partner
    assert (one.fs, one.n_sources, one.source_names) == (8000, 2, ["s1", "s2"])
    mix = _sources(2, 1, 3000, seed=6)
    est, nfe, states = one.separate(mix, generator=torch.Generator().manual_seed(1))
    assert nfe == 1 and states is None and est.shape == (2, 2, 3000)
    assert torch.equal(est, partner.estimate(mix))
    # the mixture is normalised before the network: 3 x the input gives 3 x the sources
    assert torch.allclose(one.separate(3.0 * mix)[0], 3.0 * est, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no one-shot separator"):
        one_shot_for(shipped.parent / "missing.ckpt")


def test_separate_one_shot_writes_the_one_shot_separators_stems(shipped, tmp_path):
    import soundfile as sf

    import separate
    from evaluation.separator import Separator

    mix = 0.3 * _sources(1, 1, 12000, seed=7)[0, 0].numpy()
    sf.write(tmp_path / "a.wav", mix, 8000)
    args = [str(tmp_path / "a.wav"), "-d", "cpu"]
    assert separate.main([args[0], str(tmp_path / "fast"), *args[1:], "--one-shot"]) == 0
    assert separate.main([args[0], str(tmp_path / "blend"), *args[1:], "-N", "2"]) == 0
    Separator(one_shot_for(shipped), device="cpu").separate_file(tmp_path / "a.wav",
                                                                 tmp_path / "direct")
    for name in ("s1", "s2"):
        fast, fs = sf.read(tmp_path / "fast" / name / "a.wav")
        assert fs == 8000 and fast.shape == mix.shape and np.isfinite(fast).all()
        assert np.array_equal(fast, sf.read(tmp_path / "direct" / name / "a.wav")[0])
        assert not np.allclose(fast, sf.read(tmp_path / "blend" / name / "a.wav")[0], atol=1e-3)


@pytest.mark.parametrize("extra,message", [
    (["-N", "4", "--final-step", "true"], "-N, --final-step would do nothing"),
    (["--no-blend"], "exclude each other"),
    (["--model", "OWN"], "has no one-shot separator"),
])
def test_separate_one_shot_refuses_what_it_cannot_do(shipped, tiny_ckpt, tmp_path, capsys,
                                                     extra, message):
    import separate

    (tmp_path / "a.wav").write_bytes(b"")  # never read: refused before any work
    extra = [str(tiny_ckpt) if a == "OWN" else a for a in extra]
    with pytest.raises(SystemExit) as e:
        separate.main([str(tmp_path / "a.wav"), str(tmp_path / "out"), "--one-shot", *extra])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_one_shot_scores_the_one_shot_separator_alone(tmp_path):
    import soundfile as sf

    import evaluate
    from metrics.separation import si_sdr
    from models.pretrained import DEFAULT_MODEL, PARTNERS, pretrained_path
    from tests.evaluation.toy import read_results, toy_items, write_wsj0

    items = toy_items(2, 2)
    write_wsj0(tmp_path, items, split="tt")
    path = pretrained_path(DEFAULT_MODEL)
    evaluate.main([str(path), "--test", "--one-shot", "--data-root", str(tmp_path), "-d",
                   "cpu", "-o", str(tmp_path / "out"), "--save-n", "2"])
    (folder,) = (tmp_path / "out").iterdir()
    assert folder.name.endswith("_one_shot") and "blend" not in folder.name
    records, summary = read_results(folder)
    assert summary["sampler"] is None and summary["n_ok"] == 2
    assert summary["source"]["one_shot"]["path"] == str(pretrained_path(PARTNERS[DEFAULT_MODEL][0]))
    one = one_shot_for(path)
    for (mix, tgt), r in zip(items, records):
        est = one.separate(mix[None])[0][0]
        ordered = est[r["perm"]]  # the estimate scored against each reference
        assert r["nfe"] == len(PARTNERS[DEFAULT_MODEL][2])  # one per speed view
        assert r["si_sdr"] == pytest.approx(si_sdr(ordered, tgt).tolist(), abs=1e-4)
        sample = folder / "test_samples" / f"{r['index']:04d}_{r['name']}"
        assert not (sample / "reverse.png").exists()  # no reverse process to draw
        for k in range(2):
            saved, _ = sf.read(sample / f"est_s{k + 1}.wav")
            assert np.allclose(saved, ordered[k].numpy(), atol=1e-5)


@pytest.mark.parametrize("extra,message", [
    (["-N", "4", "--denoise", "false"], "-N, --denoise would do nothing"),
    (["--no-blend"], "exclude each other"),
    (["NOPROC"], "needs a shipped model"),
])
def test_evaluate_one_shot_refuses_what_it_cannot_do(tmp_path, capsys, extra, message):
    import evaluate
    import evaluate_mp
    from evaluation.runner import NO_PROC

    for script in (evaluate, evaluate_mp):
        ckpt = NO_PROC if extra == ["NOPROC"] else "model.ckpt"
        args = [ckpt, "--one-shot", *[a for a in extra if a != "NOPROC"]]
        if script is evaluate:
            args.append("--test")
        if ckpt == NO_PROC:
            args += ["--datamodule", "voices"]
        with pytest.raises(SystemExit) as e:
            script.main([*args, "-o", str(tmp_path / "out")])
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_one_shot_of_a_model_without_one_says_so(tiny_ckpt, tmp_path):
    import evaluate

    with pytest.raises(SystemExit, match="has no one-shot separator"):
        evaluate.main([str(tiny_ckpt), "--test", "--one-shot", "-o", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.85, 1.18])
def test_stretch_there_and_back_keeps_a_band_limited_signal(factor):
    from models.blend import stretch

    n, fs = 8001, 8000
    t = torch.arange(n, dtype=torch.float64) / fs
    x = torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 1250 * t + 1)])
    slow = stretch(x[None], factor)
    assert slow.shape[-1] == round(n * factor)
    # played at the same rate, the stretched tone is lower by the factor
    peak = torch.fft.rfft(slow[0, 0]).abs().argmax().item() * fs / slow.shape[-1]
    assert peak == pytest.approx(440 / factor, abs=2.0)
    back = stretch(slow, 1 / factor, n)[0]
    inner = slice(200, n - 200)  # the resampler's edges aside
    assert back.shape == x.shape
    assert torch.allclose(back[:, inner], x[:, inner], atol=2e-3)


def test_speed_views_put_each_views_sources_in_one_order_before_the_mean():
    from models.blend import speed_views

    n = 4010  # the views have 3609 and 4411 samples
    t = torch.arange(n, dtype=torch.float64) / 8000
    s = torch.stack([torch.sin(2 * torch.pi * 300 * t), 0.5 * torch.sin(2 * torch.pi * 900 * t)])
    mix = s.sum(0)[None, None].float()
    lengths = []

    def bands(y):  # separates the two tones at every speed: below and above 600 Hz
        lengths.append(y.shape[-1])
        spec = torch.fft.rfft(y)
        low = torch.fft.irfft(spec * (torch.fft.rfftfreq(y.shape[-1], 1 / 8000) < 600), y.shape[-1])
        est = torch.cat([low, y - low], dim=1)
        return est.flip(1) if y.shape[-1] % 2 else est  # the order flips with the length

    out = speed_views(bands, mix, (1.0, 0.9, 1.1))
    assert len(lengths) == 3 and len({k % 2 for k in lengths}) == 2  # both orders occurred
    inner = slice(300, n - 300)  # the resampler's edges aside
    assert torch.allclose(out[0, :, inner], s[:, inner].float(), atol=5e-3)  # view 1's order
    assert torch.equal(speed_views(bands, mix, (1.0,)), bands(mix))
    with pytest.raises(ValueError, match="positive"):
        speed_views(bands, mix, (1.0, 0.0))

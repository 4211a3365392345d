"""The shared evaluation loop on a fake separator and in-memory data."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from evaluation.results import ItemStore, StoreMismatchError, summarize
from evaluation.runner import MixtureBaseline, Settings, evaluate_indices, item_seed
from metrics.separation import pesq_score, si_bss_eval, si_sdr, stoi_score
from tests.evaluation.toy import FakeOracle, ToyMix, assert_same_records, toy_items

FIELDS = {"index", "name", "split", "seed", "status", "error", "n_samples", "duration_s",
          "source_names", "nfe", "si_sdr", "si_sir", "si_sar", "pesq", "estoi", "mix_si_sdr",
          "si_sdr_improvement", "perm", "missing", "run_time_s", "metric_time_s", "rtf"}


def run(tmp_path, separator, dataset, indices, settings, name="a"):
    store = ItemStore(tmp_path / name, "test", {"run": name}).open()
    evaluate_indices(separator, dataset, "test", indices, settings, store, "cpu",
                     sample_dir=tmp_path / name / "samples")
    return store.read(indices)


@pytest.mark.parametrize("k", [2, 3])
def test_records_match_direct_computation(tmp_path, k):
    items = toy_items(3, k, seed=k)
    fake = FakeOracle(items, rotate=1)
    settings = Settings(N=4, snr=0.3, corrector_steps=2, denoise=False, schedule="log", seed=7)
    records = run(tmp_path, fake, ToyMix(items), [0, 1, 2], settings)
    # The sampler options reach the separator.
    assert all(c == dict(N=4, snr=0.3, corrector_steps=2, denoise=False, schedule="log",
                         intermediate=False) for c in fake.calls)
    for i, rec in enumerate(records):
        assert set(rec) == FIELDS and rec["status"] == "ok" and rec["missing"] == []
        mix, tgt = items[i]
        assert rec["n_samples"] == mix.shape[-1] and rec["duration_s"] == mix.shape[-1] / 8000
        assert rec["nfe"] == 4 * 3 and rec["name"] == f"utt{i:02d}"
        assert rec["rtf"] == pytest.approx(rec["run_time_s"] / rec["duration_s"])
        # Re-create the estimate from the per-item seed, score it directly.
        gen = torch.Generator().manual_seed(item_seed(7, i))
        est = fake.separate(mix[None], N=4, corrector_steps=2, generator=gen)[0][0].numpy()
        direct = si_bss_eval(est, tgt.numpy())
        # The fake rotates the sources by one: est index for ref k is k+1 mod K.
        assert rec["perm"] == [(j + 1) % k for j in range(k)]
        for f in ("si_sdr", "si_sir", "si_sar"):
            np.testing.assert_allclose(rec[f], direct[f], atol=1e-9)
        mix_sdr = si_sdr(mix.double().expand(k, -1), tgt.double()).numpy()
        np.testing.assert_allclose(rec["mix_si_sdr"], mix_sdr, atol=1e-9)
        np.testing.assert_allclose(rec["si_sdr_improvement"], np.array(rec["si_sdr"]) - mix_sdr)
        assert min(rec["si_sdr"]) > 15  # noise at -26 dB relative to the sources
        matched = est[rec["perm"][0]]
        assert rec["pesq"][0] == pytest.approx(pesq_score(matched, tgt[0].numpy(), 8000, "nb")[0])
        assert rec["estoi"][0] == pytest.approx(stoi_score(matched, tgt[0].numpy(), 8000)[0])


def test_records_do_not_depend_on_slicing(tmp_path):
    items = toy_items(4, 2)
    settings = Settings(N=2, seed=3)
    whole = run(tmp_path, FakeOracle(items), ToyMix(items), range(4), settings, "whole")
    odd = run(tmp_path, FakeOracle(items), ToyMix(items), [3, 1], settings, "odd")
    assert_same_records(whole[1::2], odd)
    other_seed = run(tmp_path, FakeOracle(items), ToyMix(items), [1], Settings(N=2, seed=4), "s")
    assert other_seed[0]["si_sdr"] != whole[1]["si_sdr"]


def test_failures_are_recorded_and_the_run_goes_on(tmp_path):
    items = toy_items(4, 2)
    fake = FakeOracle(items, nan_for=[1], fail_for=[2])
    records = run(tmp_path, fake, ToyMix(items, broken=[3]), range(4), Settings(N=2))
    assert [r["status"] for r in records] == ["ok", "ok", "error", "error"]
    assert "sampler exploded" in records[2]["error"]
    assert "loading failed" in records[3]["error"] and "utt03" in records[3]["error"]
    nan_rec = records[1]
    assert nan_rec["nonfinite"] == {"nan": 10, "inf": 0}
    assert nan_rec["si_sdr"] == [None, None] and nan_rec["pesq"] == [None, None]
    assert {(m["metric"], m["source"]) for m in nan_rec["missing"]} >= {("si_sdr", 0), ("pesq", 1)}
    assert all("NaN" in m["reason"] for m in nan_rec["missing"])
    summary = summarize(records, {})
    assert summary["n_failed"] == 2 and summary["n_ok"] == 2 and summary["n_with_missing"] == 1
    sdr = summary["metrics"]["si_sdr"]
    # Only utterance 0 is valid: 2 values; 3 utterances x 2 sources are missing.
    assert sdr["n_valid"] == 2 and sdr["n_missing"] == 6
    assert sdr["mean"] == pytest.approx(np.mean(records[0]["si_sdr"]))
    assert sdr["per_source"]["s2"]["mean"] == pytest.approx(records[0]["si_sdr"][1])


def test_save_n_writes_audio_and_figure(tmp_path):
    items = toy_items(3, 2)
    fake = FakeOracle(items)
    run(tmp_path, fake, ToyMix(items), range(3), Settings(N=5, save_n=2))
    assert [c["intermediate"] for c in fake.calls] == [True, True, False]
    folders = sorted(p.name for p in (tmp_path / "a" / "samples").iterdir())
    assert folders == ["0000_utt00", "0001_utt01"]
    d = tmp_path / "a" / "samples" / "0001_utt01"
    names = {p.name for p in d.iterdir()}
    assert names == {"mix.wav", "est_s1.wav", "est_s2.wav", "ref_s1.wav", "ref_s2.wav",
                     "reverse.png"}
    assert (d / "reverse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ref, fs = sf.read(d / "ref_s2.wav")
    assert fs == 8000 and np.array_equal(ref.astype(np.float32), items[1][1][1].numpy())
    # Saved estimates are in the reference order: est_s1 is close to ref_s1.
    est, _ = sf.read(d / "est_s1.wav")
    assert si_sdr(torch.tensor(est), items[1][1][0].double()).item() > 15


def test_enhance_reports_the_first_source_without_permutation(tmp_path):
    items = toy_items(2, 2)
    fake = FakeOracle(items, rotate=0)
    settings = Settings(N=2, enhance=True)
    rec = run(tmp_path, fake, ToyMix(items), [0], settings)[0]
    assert rec["perm"] == [0] and rec["source_names"] == ["s1"]
    assert all(len(rec[f]) == 1 for f in ("si_sdr", "si_sir", "pesq", "estoi", "mix_si_sdr"))
    assert settings.resolved_pesq_mode(8000) == "wb"
    # Rotated outputs are not re-ordered in enhancement mode: s1 gets the wrong source.
    bad = run(tmp_path, FakeOracle(items, rotate=1), ToyMix(items), [0], settings, "b")[0]
    assert bad["si_sdr"][0] < 0 < rec["si_sdr"][0]


def test_mixture_baseline_scores_the_mixture(tmp_path):
    items = toy_items(2, 2)
    base = MixtureBaseline(8000, 2, ["s1", "s2"], None, "mixture")
    records = run(tmp_path, base, ToyMix(items), [0, 1], Settings(no_proc=True))
    for rec, (mix, tgt) in zip(records, items):
        expected = si_sdr(mix.double().expand(2, -1), tgt.double()).tolist()
        np.testing.assert_allclose(rec["si_sdr"], expected, atol=1e-9)
        np.testing.assert_allclose(rec["si_sdr_improvement"], [0, 0], atol=1e-6)
        assert rec["nfe"] == 0


def test_item_store_is_durable_and_guards_its_run(tmp_path):
    store = ItemStore(tmp_path, "val", {"ckpt": "x", "N": 30}).open()
    store.write({"index": 5, "status": "ok", "value": float("nan"), "xs": [1.0, float("inf")]})
    assert store.done() == {5}
    with open(store.path(5)) as f:
        assert json.load(f) == {"index": 5, "status": "ok", "value": None, "xs": [1.0, None]}
    # Leftover temporary files of a killed writer are not records.
    (store.dir / ".0000007.json.abc.tmp").write_text("{")
    assert store.done() == {5}
    with pytest.raises(RuntimeError, match="missing"):
        store.read([5, 6])
    with pytest.raises(StoreMismatchError, match=r"another run.*\['N'\]"):
        ItemStore(tmp_path, "val", {"ckpt": "x", "N": 10}).open()
    ItemStore(tmp_path, "val", {"ckpt": "x", "N": 10}).open(overwrite=True)
    assert ItemStore(tmp_path, "val", {"ckpt": "x", "N": 10}).done() == set()


def test_failed_records_are_retried_and_replaced_by_a_success(tmp_path):
    items = toy_items(4, 2)
    store = ItemStore(tmp_path / "r", "test", {"run": "r"}).open()
    evaluate_indices(FakeOracle(items), ToyMix(items, broken=[3]), "test", range(4),
                     Settings(N=2), store, "cpu")  # fmt: skip
    assert store.done() == {0, 1, 2} and store.failed() == {3}
    assert [r["status"] for r in store.read(range(4))] == ["ok", "ok", "ok", "error"]
    todo = [i for i in range(4) if i not in store.done()]
    assert todo == [3]  # a rerun retries the failure ...
    evaluate_indices(FakeOracle(items), ToyMix(items), "test", todo, Settings(N=2), store, "cpu")
    assert store.done() == {0, 1, 2, 3} and store.failed() == set()  # ... and it is replaced
    assert not store.path(3, failed=True).exists()
    assert [r["status"] for r in store.read(range(4))] == ["ok"] * 4


def test_summary_means_medians_and_counts():
    recs = [{"index": i, "status": "ok", "source_names": ["a", "b"], "si_sdr": v, "nfe": n}
            for i, (v, n) in enumerate([([1.0, 2.0], 10), ([None, 6.0], 20), ([3.0, 9.0], 30)])]
    s = summarize(recs, {"fs": 8000})
    assert s["fs"] == 8000
    m = s["metrics"]["si_sdr"]
    assert (m["mean"], m["median"], m["n_valid"], m["n_missing"]) == (4.2, 3.0, 5, 1)
    assert m["per_source"]["a"] == {"mean": 2.0, "median": 2.0, "n_valid": 2, "n_missing": 1}
    assert s["metrics"]["nfe"]["mean"] == 20 and "pesq" not in s["metrics"]

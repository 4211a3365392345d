"""evaluate.py and evaluate_mp.py end to end: a tiny real checkpoint on a toy corpus."""

import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import evaluate
import evaluate_mp
from evaluation.runner import item_seed
from metrics.separation import si_bss_eval, si_sdr
from tests.evaluation.toy import (
    assert_same_records,
    read_results,
    single_thread,
    toy_items,
    write_wsj0,
)

N_TEST = 3
PARAMS = "N-2_snr-0.50_corr-1_den-True_sch-linear"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("wsj0")
    items = {"tt": toy_items(N_TEST, 2, seconds=(0.6, 0.8), seed=1),
             "cv": toy_items(1, 2, seconds=(0.6, 0.8), seed=2)}
    for split, its in items.items():
        write_wsj0(root, its, split=split)
    return root, items


def _config(data_root):
    """The resolved training config of a tiny model on the toy corpus."""
    from hydra import compose, initialize_config_dir

    config_dir = os.path.join(os.path.dirname(evaluate.__file__), "config")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(config_name=None, overrides=[
            "+model=default", "model/score_model=tiny", "+datamodule=default", "+n_sources=2",
            "+fs=8000", "+name=tinyeval", f"datamodule.train.root={data_root}"])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def tiny_ckpt(corpus, tmp_path_factory):
    """A checkpoint as train.py writes it (config + weights), from the module's API."""
    from hydra.utils import instantiate

    cfg = _config(corpus[0])
    torch.manual_seed(0)
    model = instantiate(OmegaConf.create(cfg).model)
    with torch.no_grad():  # untrained output layers are ~0; make the output depend on weights
        for p in model.score_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"state_dict": model.state_dict(), "ema": model.ema.state_dict(),
                "diffsep_config": cfg}, path)
    return path




@pytest.fixture(scope="module")
def single_run(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    single_thread(evaluate.main, [str(tiny_ckpt), "--val", "--test", "-N", "2", "-d", "cpu",
                                   "-o", str(out), "--save-n", "1", "--seed", "5"])
    return out / f"tinyeval_tiny_{PARAMS}"


@pytest.mark.slow
def test_evaluate_writes_records_summary_and_samples(single_run, corpus, tiny_ckpt):
    assert sorted(p.name for p in single_run.iterdir()) == [
        "test.json", "test_items", "test_samples", "test_summary.json",
        "val.json", "val_items", "val_samples", "val_summary.json"]
    records, summary = read_results(single_run, "test")
    assert [r["index"] for r in records] == list(range(N_TEST))
    assert [r["name"] for r in records] == [f"utt{i:02d}" for i in range(N_TEST)]
    for r in records:
        assert r["status"] == "ok" and r["nfe"] == 2 * (1 + 1) + 1 and len(r["si_sdr"]) == 2
        assert sorted(r["perm"]) == [0, 1] and r["rtf"] > 0
        assert r["seed"] == item_seed(5, r["index"])
    assert summary["n_items"] == N_TEST and summary["n_ok"] == N_TEST
    assert summary["sampler"] == {"N": 2, "snr": 0.5, "corrector_steps": 1, "denoise": True,
                                  "schedule": "linear"}
    assert summary["metric_settings"]["pesq_mode"] == "nb"
    assert summary["metric_settings"]["stoi_extended"] is True
    assert summary["checkpoint"] == str(tiny_ckpt.resolve())
    assert summary["metrics"]["si_sdr"]["mean"] == pytest.approx(
        np.mean([x for r in records for x in r["si_sdr"]]))
    assert "torch" in summary["versions"]
    sample = single_run / "test_samples" / "0000_utt00"
    assert (sample / "reverse.png").stat().st_size > 1000 and (sample / "est_s2.wav").exists()
    assert len(list((single_run / "test_samples").iterdir())) == 1

    # The record is what the checkpoint gives for this utterance and seed.
    from models.loading import load_model

    model = load_model(str(tiny_ckpt), "cpu")
    mix, tgt = corpus[1]["tt"][1]
    gen = torch.Generator().manual_seed(item_seed(5, 1))
    torch.manual_seed(item_seed(5, 1))
    est = single_thread(lambda: model.separate(mix[None], N=2, snr=0.5, corrector_steps=1,
                                                denoise=True, schedule="linear",
                                                generator=gen)[0][0])
    direct = si_bss_eval(est.double().numpy(), tgt.double().numpy())
    np.testing.assert_allclose(records[1]["si_sdr"], direct["si_sdr"], rtol=1e-6)
    assert records[1]["perm"] == direct["perm"].tolist()


@pytest.mark.slow
def test_evaluate_mp_resumes_after_a_kill_and_matches_evaluate(single_run, tiny_ckpt, tmp_path):
    args = [str(tiny_ckpt), "--split", "test", "-N", "2", "-o", str(tmp_path), "--seed", "5",
            "--workers", "2"]
    with pytest.raises(SystemExit) as stop:
        evaluate_mp.main(args + ["--_stop-after", "1"])  # each worker dies after 1 record
    assert stop.value.code == 1
    folder = tmp_path / f"tinyeval_tiny_{PARAMS}"
    items = folder / "test_items"
    first = {p.name: p.stat().st_mtime_ns for p in items.glob("0*.json")}
    assert sorted(first) == ["0000000.json", "0000001.json"]  # one per worker
    assert not (folder / "test.json").exists()

    evaluate_mp.main(args[:-2] + ["--workers", "1"])  # resuming with another slicing
    after = {p.name: p.stat().st_mtime_ns for p in items.glob("0*.json")}
    assert len(after) == N_TEST
    assert all(after[n] == t for n, t in first.items())  # finished items not recomputed
    merged, summary = read_results(folder, "test")
    assert [r["index"] for r in merged] == list(range(N_TEST))
    assert summary["run"]["workers"] == 1
    single, _ = read_results(single_run, "test")
    assert_same_records(merged, single, rel=1e-6)


def test_no_proc_scores_the_mixture(tiny_ckpt, corpus, tmp_path):
    evaluate.main(["__no_proc__", "--test", "-c", str(tiny_ckpt), "-o", str(tmp_path)])
    records, summary = read_results(tmp_path / "mixture-tiny_no_proc", "test")
    assert summary["sampler"] is None and len(records) == N_TEST
    for r, (mix, tgt) in zip(records, corpus[1]["tt"]):
        expected = si_sdr(mix.double().expand(2, -1), tgt.double()).tolist()
        np.testing.assert_allclose(r["si_sdr"], expected, atol=1e-6)
        np.testing.assert_allclose(r["mix_si_sdr"], expected, atol=1e-6)
        assert r["nfe"] == 0


def test_no_proc_with_a_hydra_datamodule(corpus, tmp_path):
    evaluate.main(["__no_proc__", "--test", "--datamodule", "default", "--override",
                   f"datamodule.train.root={corpus[0]}", "-o", str(tmp_path), "-l", "2"])
    records, summary = read_results(tmp_path / "mixture-default_no_proc", "test")
    assert [r["index"] for r in records] == [0, 1] and summary["limit"] == 2
    for r, (mix, tgt) in zip(records, corpus[1]["tt"]):
        expected = si_sdr(mix.double().expand(2, -1), tgt.double()).tolist()
        np.testing.assert_allclose(r["si_sdr"], expected, atol=1e-6)


def test_bad_inputs_fail_before_any_work(tmp_path, corpus, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="does not exist"):
        evaluate.main([str(tmp_path / "nope.ckpt"), "--test", "-o", str(out)])
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(SystemExit, match="not a DiffSep checkpoint"):
        evaluate.main([str(junk), "--test", "-o", str(out)])
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(SystemExit, match="not a DiffSep checkpoint"):
        evaluate.main([str(other), "--test", "-o", str(out)])
    moved = tmp_path / "moved.ckpt"
    torch.save({"state_dict": {}, "diffsep_config": _config(tmp_path / "missing")}, moved)
    with pytest.raises(SystemExit, match="missing folder"):
        evaluate.main(["__no_proc__", "--test", "-c", str(moved), "-o", str(out)])
    with pytest.raises(SystemExit, match="missing folder"):
        evaluate_mp.main(["__no_proc__", "--split", "libri-clean", "-c", str(moved),
                          "--libri-root", str(tmp_path / "nolibri"), "-o", str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit):
        evaluate.main([str(junk), "-o", str(out)])  # neither --val nor --test
    assert "--val" in capsys.readouterr().err


def test_failed_items_make_the_run_fail_and_are_retried_after_a_fix(tmp_path, capsys):
    root = tmp_path / "data"
    items = toy_items(3, 2, seconds=(0.6, 0.8), seed=4)
    base = write_wsj0(root, items)
    good = (base / "s2" / "utt01.wav").read_bytes()
    (base / "s2" / "utt01.wav").write_bytes(b"RIFF broken")
    args = ["__no_proc__", "--test", "--datamodule", "default", "--override",
            f"datamodule.train.root={root}", "-o", str(tmp_path / "res")]
    with pytest.raises(SystemExit) as e:
        evaluate.main(args)
    assert "1 utterance(s) failed" in str(e.value.code)
    out = capsys.readouterr().out
    assert "test: 2/3 utterances scored" in out and "1 utt01" in out and "retry" in out
    (base / "s2" / "utt01.wav").write_bytes(good)  # the data is fixed
    evaluate.main(args)  # no error now: the failed item was retried
    records, summary = read_results(tmp_path / "res" / "mixture-default_no_proc", "test")
    assert summary["n_ok"] == 3 and summary["n_failed"] == 0
    assert [r["status"] for r in records] == ["ok"] * 3
    assert not list((tmp_path / "res").rglob("*.failed.json"))


def test_checkpoint_sampler_is_the_default_and_data_can_move(tiny_ckpt, corpus, tmp_path):
    import shutil

    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["diffsep_config"]["model"]["sampler"].update(N=3, corrector="none", final_step=False)
    own = tmp_path / "own.ckpt"
    torch.save(ckpt, own)
    moved = tmp_path / "moved"
    shutil.copytree(corpus[0], moved)  # the same corpus at another path
    out = tmp_path / "res"
    single_thread(evaluate.main, [str(own), "--test", "-l", "1", "-d", "cpu", "-o", str(out),
                                  "--data-root", str(moved)])
    folder = out / "tinyeval_own_N-3_snr-0.50_corr-1_den-True_sch-linear"
    records, summary = read_results(folder, "test")
    assert records[0]["nfe"] == 3  # the checkpoint's N = 3, no corrector, no final step
    assert summary["source"]["data_root"] == str(moved)
    with pytest.raises(SystemExit, match="missing folder"):  # the redirect is what is read
        evaluate.main([str(own), "--test", "--data-root", str(tmp_path / "empty")])
    with pytest.raises(SystemExit):  # the override is checked: datamodule keys only
        evaluate.main([str(own), "--test", "--override", "model.sampler.N=5"])

"""Checkpoints written before K had one name store it as `n_speakers` (top level), `ndim`
(model.sde) and `n_spkr` (the datamodule's datasets); they must keep loading and
evaluating. The shipped model's first two releases were such checkpoints; the fixture
writes the shipped model back in those names."""

import pytest
import torch
from omegaconf import OmegaConf

from evaluation.runner import NO_PROC, Settings
from evaluation.session import EvalSession
from models.loading import CONFIG_KEY, load_model
from models.pretrained import DEFAULT_MODEL, pretrained_path
from tests.evaluation.toy import toy_items, write_wsj0

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped speech model with its config in the names used before the rename."""
    ckpt = torch.load(pretrained_path(DEFAULT_MODEL), map_location="cpu", weights_only=True)
    cfg = ckpt[CONFIG_KEY]
    cfg["n_speakers"] = cfg.pop("n_sources")
    cfg["model"]["sde"]["ndim"] = cfg["model"]["sde"].pop("n_sources")
    dm = cfg["datamodule"]
    for data in (dm["train"]["corpus"], dm["val"], dm["test"]):
        data["n_spkr"] = data.pop("n_sources")
    path = tmp_path_factory.mktemp("old") / "old-names.ckpt"
    torch.save(ckpt, path)
    return path


def test_the_shipped_checkpoint_uses_the_old_names(shipped):
    cfg = torch.load(shipped, map_location="cpu", weights_only=True)[CONFIG_KEY]
    assert cfg["n_speakers"] == 2 and "n_sources" not in cfg
    assert cfg["model"]["sde"]["ndim"] == 2 and "n_sources" not in cfg["model"]["sde"]
    assert cfg["datamodule"]["test"]["n_spkr"] == 2


def test_an_old_checkpoint_loads(shipped):
    model = load_model(shipped)
    assert (model.n_sources, model.sde.n_sources, model.fs) == (2, 2, 8000)


def test_an_old_checkpoint_evaluates_on_its_datamodule_config(shipped, tmp_path):
    write_wsj0(tmp_path, toy_items(2, 2), split="tt")
    session = EvalSession(str(shipped), Settings(N=1), ["test"], output_dir=tmp_path / "out",
                          data_root=str(tmp_path))  # fmt: skip
    data = session.datasets["test"]
    assert (data.n_sources, data.fs, len(data)) == (2, 8000, 2)
    # the mixture baseline reads K from the old config's top-level key
    baseline = EvalSession(NO_PROC, Settings(no_proc=True), ["test"], config_from=str(shipped),
                           output_dir=tmp_path / "out", data_root=str(tmp_path))  # fmt: skip
    assert (baseline.separator.n_sources, baseline.separator.fs) == (2, 8000)
    assert baseline.separator.source_names == ["s1", "s2"]


def test_old_and_new_top_level_keys_give_the_same_baseline(shipped, tmp_path, monkeypatch):
    import evaluation.inputs as inputs

    old = OmegaConf.create(torch.load(shipped, weights_only=True)[CONFIG_KEY])
    new = OmegaConf.create({k if k != "n_speakers" else "n_sources": v
                            for k, v in OmegaConf.to_container(old).items()})  # fmt: skip
    for cfg in (old, new):
        monkeypatch.setattr(inputs, "config_from_checkpoint", lambda _path, c=cfg: c)
        sep = inputs.load_separator(NO_PROC, "cpu", config_from=str(shipped))
        assert (sep.fs, sep.n_sources, sep.source_names) == (8000, 2, ["s1", "s2"])

"""A checkpoint that loads with weights_only=True must still not run arbitrary callables."""

import copy

import pytest
import torch

import evaluate
from evaluation.inputs import EvaluationInputError, build_dataset
from models.loading import UnsafeCheckpoint, load_model


def attack(tiny_ckpt, tmp_path, where):
    """A copy of `tiny_ckpt` whose config node `where` calls the project's file writer."""
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    cfg = copy.deepcopy(ckpt["diffsep_config"])
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    node = cfg
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = {"_target_": "datasets.synth.wavio.write_atomic", "path": str(victim),
                       "content": b"owned"}  # fmt: skip
    ckpt["diffsep_config"] = cfg
    path = tmp_path / "attack.ckpt"
    torch.save(ckpt, path)
    torch.load(path, weights_only=True)  # the attack passes the weights_only check
    return path, victim


@pytest.mark.parametrize("where", [("model", "score_model", "backbone"), ("model", "sde"),
                                   ("model", "optimizer")])  # fmt: skip
def test_model_config_with_a_foreign_target_is_refused(tiny_ckpt, tmp_path, where):
    path, victim = attack(tiny_ckpt, tmp_path, where)
    with pytest.raises(UnsafeCheckpoint, match=r"model\.\w+.*datasets.synth.wavio.write_atomic"):
        load_model(path)
    assert victim.read_text() == "precious"


def test_evaluate_refuses_the_attack_before_writing(tiny_ckpt, tmp_path):
    path, victim = attack(tiny_ckpt, tmp_path, ("model", "sde"))
    with pytest.raises(SystemExit) as e:
        evaluate.main([str(path), "--test", "-o", str(tmp_path / "res"), "-d", "cpu"])
    assert "model.sde: its _target_" in str(e.value.code)
    assert "not one of this project's classes" in str(e.value.code)
    assert victim.read_text() == "precious"


def test_dataset_config_with_a_foreign_target_is_refused(tiny_ckpt, tmp_path):
    path, victim = attack(tiny_ckpt, tmp_path, ("datamodule", "test"))
    model = load_model(path)  # the model part is clean
    with pytest.raises(EvaluationInputError, match="datamodule.test"):
        build_dataset(model, "test")
    assert victim.read_text() == "precious"


def test_every_allowed_target_exists_and_old_network_paths_are_aliases():
    from hydra.utils import get_class, get_method

    from models.loading import DATA_TARGETS, MODEL_TARGETS

    for target in MODEL_TARGETS | DATA_TARGETS:
        assert callable(get_method(target)), target
    # checkpoints written before networks/ name the classes under models.*
    for old in sorted(t for t in MODEL_TARGETS if t.startswith("models.") and "diffsep" not in t):
        new = "networks." + old.split(".", 1)[1]
        assert get_class(old) is get_class(new), old

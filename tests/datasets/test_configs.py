"""Every config/datamodule node composes with Hydra and instantiates on fixture trees."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.datasets.corpora import MUSDB_TRAIN

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

# config name -> (fixture with the tree, n_sources, fs, expected source names)
CASES = {
    "default": ("wsj0_root", 2, 8000, ["s1", "s2"]),
    "diffuse": ("wsj0_root", 2, 8000, ["s1", "s2"]),
    "synth": ("wsj0_root", 2, 8000, ["s1", "s2"]),
    "libri": ("libri_root", 2, 8000, ["s1", "s2"]),
    "nr": ("vctk_root", 2, 16000, ["clean", "noise"]),
    "synth_nr": ("vctk_root", 2, 16000, ["clean", "noise"]),
    "musdb": ("musdb_root", 4, 8000, ["drums", "bass", "other", "vocals"]),
    "synth_music": ("musdb_root", 4, 8000, ["drums", "bass", "other", "vocals"]),
    "music": ("musdb_root", 4, 8000, ["drums", "bass", "other", "vocals"]),
    "voices": ("wsj0_root", 2, 8000, ["s1", "s2"]),
}
# where the training corpus's root is (voices: the corpus that DynamicMix remixes)
TRAIN_NODE = {"voices": "datamodule.train.corpus"}


def test_every_config_is_tested():
    assert {p.stem for p in (CONFIG_DIR / "datamodule").glob("*.yaml")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_instantiates(name, request):
    fixture, n_sources, fs, sources = CASES[name]
    root = request.getfixturevalue(fixture)
    if name == "libri":  # the fixture has train-100 only
        extra = ["datamodule.train.split=train-100"]
    else:
        extra = []
    overrides = [
        f"+datamodule={name}",
        f"+n_sources={n_sources}",
        f"+fs={fs}",
        f"{TRAIN_NODE.get(name, 'datamodule.train')}.root={root}",
        "datamodule.batch_size=2",
        "datamodule.num_workers=0",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=None, overrides=overrides)
    assert cfg.datamodule._target_ == "datasets.datamodule.DataModule"
    assert cfg.datamodule.val.root == str(root) and cfg.datamodule.test.root == str(root)
    dm = instantiate(cfg.datamodule)
    assert dm.source_names == sources and dm.fs == fs
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        assert ds.n_sources == len(sources) and ds.fs == fs and len(ds) > 0
    if fixture in ("vctk_root", "musdb_root"):  # val is held out of the train folder
        assert not set(dm.train_set.names) & set(dm.val_set.names)
    if name == "voices":  # training examples are remixes of the corpus's sources
        assert type(dm.train_set).__name__ == "DynamicMix"
        assert dm.train_set.corpus.split == "tr" and dm.val_set.split == "cv"
    if name in ("synth_music", "music"):  # validation tracks from the corpus manifest
        assert dm.val_set.names == [MUSDB_TRAIN[-1]]
    if name == "music":  # remixed training items, plain validation items
        assert dm.train_set.remix_tracks and dm.train_set.eq_db > 0
        assert not dm.val_set.remix_tracks and dm.val_set.eq_db == 0
    mix, tgt, lengths = next(iter(dm.train_dataloader()))
    assert mix.shape[:2] == (2, 1) and tgt.shape[:2] == (2, len(sources))
    train = cfg.datamodule.train.get("corpus") or cfg.datamodule.train
    crop = train.get("max_len_s") or train.get("segment_s")
    assert mix.shape[-1] == round(crop * fs)
    mix, tgt, lengths = next(iter(dm.val_dataloader()))
    assert mix.shape[0] == min(dm.val_batch_size, len(dm.val_set))
    assert tgt.shape[1] == len(sources)


def test_reference_batch_sizes():
    want = {"default": (6, 4), "diffuse": (3, 4), "synth": (4, 2)}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name, (batch, workers) in want.items():
            cfg = compose(config_name=None, overrides=[f"+datamodule={name}"])
            assert (cfg.datamodule.batch_size, cfg.datamodule.num_workers) == (batch, workers)
            assert cfg.datamodule.train.max_len_s == (2.0 if name == "synth" else 5.0)


def voices_datamodule(root, *overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=None, overrides=[
            "+datamodule=voices", "+n_sources=2", "+fs=8000", "datamodule.num_workers=0",
            f"datamodule.train.corpus.root={root}", *overrides])
    return instantiate(cfg.datamodule)


def test_voices_extra_corpus_is_opened_only_when_asked(wsj0_root, tmp_path):
    # default extra_p 0: the configured generated corpus is not opened (it need not exist)
    dm = voices_datamodule(wsj0_root, f"datamodule.train.extra.root={tmp_path / 'absent'}")
    assert dm.train_set.extra is None
    dm = voices_datamodule(wsj0_root, "datamodule.train.extra_p=0.3",
                           f"datamodule.train.extra.root={wsj0_root}")
    extra = dm.train_set.extra
    assert dm.train_set.extra_p == 0.3 and extra.split == "tr"
    assert extra.crop == dm.train_set.corpus.crop and extra.fs == 8000
    with pytest.raises(Exception, match="extra corpus cannot be opened: missing folder .*absent"):
        voices_datamodule(wsj0_root, "datamodule.train.extra_p=0.3",
                          f"datamodule.train.extra.root={tmp_path / 'absent'}")

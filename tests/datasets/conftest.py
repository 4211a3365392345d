"""Session fixtures: one tiny corpus per layout (see corpora.py)."""

import os
from pathlib import Path

import pytest

from tests.datasets.corpora import make_librimix, make_musdb, make_vctk, make_wsj0


@pytest.fixture(scope="session")
def wsj0_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wsj0") / "wsj0_mix"
    make_wsj0(root, 2)
    make_wsj0(root, 3, cut="max")
    return root


@pytest.fixture(scope="session")
def libri_root(tmp_path_factory) -> Path:
    return make_librimix(tmp_path_factory.mktemp("libri") / "LibriMix")


@pytest.fixture(scope="session")
def vctk_root(tmp_path_factory) -> Path:
    return make_vctk(tmp_path_factory.mktemp("vctk") / "VCTK_DEMAND")


@pytest.fixture(scope="session")
def musdb_root(tmp_path_factory) -> Path:
    return make_musdb(tmp_path_factory.mktemp("musdb") / "musdb18hq")


@pytest.fixture
def apt_without_packages(tmp_path, monkeypatch) -> None:
    """An `apt-get` first on PATH that, like apt on a machine without the package
    lists, finds no package (exit 100, apt's message on stderr)."""
    fake_bin = tmp_path / "fake-apt-bin"
    fake_bin.mkdir()
    apt = fake_bin / "apt-get"
    apt.write_text("#!/bin/sh\necho 'E: Unable to locate package '$2 >&2\nexit 100\n")
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")

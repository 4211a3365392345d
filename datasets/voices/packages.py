"""The Debian packages of recorded voices: fetch, verify and unpack without installing.

`apt-get download NAME` writes `NAME_<version>_all.deb` into the cache; `dpkg-deb -x`
unpacks it into `{cache}/trees/NAME_<version>` (through a temporary folder, renamed
into place, so a tree is either complete or absent). No root and no system install
is needed; a .deb placed in `{cache}/debs` by hand is used as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Only these four feed the training and validation corpus; other recorded voices are
# kept for independent evaluation.
PACKAGES = ("klettres-data", "ktuberling-data", "fillets-ng-data-cs", "fillets-ng-data-nl")


class PackageError(RuntimeError):
    """A package could not be fetched or unpacked; the message says what to do."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str
    deb: Path
    tree: Path

    def as_dict(self) -> dict:
        return {"version": self.version, "sha256": self.sha256, "deb": self.deb.name}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise PackageError(f"{cmd[0]} is not installed: {e}") from e


def _manual_hint(name: str, debs: Path) -> str:
    return (f"fetch it by hand and rerun: (cd {debs} && apt-get download {name}), "
            "or copy its .deb file into that folder")  # fmt: skip


def find_deb(name: str, debs: Path) -> Path | None:
    """The newest `NAME_*.deb` in `debs` (by file name), or None."""
    found = sorted(debs.glob(f"{name}_*.deb"))
    return found[-1] if found else None


def fetch_deb(name: str, debs: Path) -> Path:
    """The package's .deb in `debs`, downloaded with `apt-get download` if absent."""
    debs.mkdir(parents=True, exist_ok=True)
    deb = find_deb(name, debs)
    if deb is not None:
        return deb
    res = _run(["apt-get", "download", name], cwd=debs)
    deb = find_deb(name, debs)
    if res.returncode != 0 or deb is None:
        msg = (res.stderr or res.stdout).strip().splitlines()
        why = msg[-1] if msg else f"exit status {res.returncode}"
        raise PackageError(
            f"could not download the Debian package {name} ({why}). "
            "Run 'apt-get update' if the package lists are missing, or "
            + _manual_hint(name, debs)
        )
    return deb


def deb_field(deb: Path, field: str) -> str:
    res = _run(["dpkg-deb", "-f", str(deb), field])
    if res.returncode != 0 or not res.stdout.strip():
        raise PackageError(f"{deb} is not a readable Debian package ({res.stderr.strip()}); "
                           "delete it and rerun")  # fmt: skip
    return res.stdout.strip()


def unpack(deb: Path, trees: Path, name: str, version: str) -> Path:
    """Unpack `deb` into `trees/NAME_VERSION` (atomically); reuse a complete tree."""
    tree = trees / f"{name}_{version.replace(':', '%3a')}"
    if tree.is_dir():
        return tree
    trees.mkdir(parents=True, exist_ok=True)
    tmp = trees / f".{tree.name}.partial{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    res = _run(["dpkg-deb", "-x", str(deb), str(tmp)])
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PackageError(f"dpkg-deb could not unpack {deb}: {res.stderr.strip()}; "
                           "delete the file and rerun")  # fmt: skip
    os.replace(tmp, tree)
    return tree


def clean_partial_trees(trees: Path) -> None:
    """Remove unpacking folders left behind by an interrupted run."""
    if trees.is_dir():
        for p in trees.glob(".*.partial*"):
            shutil.rmtree(p, ignore_errors=True)


def prepare_packages(cache: str | Path, names=PACKAGES) -> dict[str, Package]:
    """Fetch (if needed), verify and unpack every package; {name: Package}."""
    cache = Path(cache)
    debs, trees = cache / "debs", cache / "trees"
    clean_partial_trees(trees)
    out = {}
    for name in names:
        deb = fetch_deb(name, debs)
        got = deb_field(deb, "Package")
        if got != name:
            raise PackageError(f"{deb} holds the package {got!r}, not {name!r}; delete it")
        version = deb_field(deb, "Version")
        out[name] = Package(name, version, sha256_of(deb), deb, unpack(deb, trees, name, version))
    return out

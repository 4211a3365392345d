"""The three General MIDI soundfonts of the music corpus, and which split uses which.

TimGM6mb comes with pretty_midi; FluidR3_GM and MuseScore General are Debian packages,
fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a cache, as the
recorded-voice corpus does with its packages (no install, no root). Training and
validation tracks are rendered with TRAIN_SOUNDFONTS; the test split only with
TEST_SOUNDFONT, so the test measures instruments the model has never heard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets.synth.music import soundfont_path
from datasets.voices.packages import PackageError, prepare_packages, sha256_of


@dataclass(frozen=True)
class Soundfont:
    name: str
    package: str | None  # None: shipped with pretty_midi
    file: str  # the .sf2 file name inside the package


SOUNDFONTS = {
    "timgm6mb": Soundfont("timgm6mb", None, "TimGM6mb.sf2"),
    "musescore": Soundfont("musescore", "musescore-general-soundfont-lossless",
                           "MuseScore_General_Full.sf2"),
    "fluidr3": Soundfont("fluidr3", "fluid-soundfont-gm", "FluidR3_GM.sf2"),
}  # fmt: skip
TRAIN_SOUNDFONTS = ("timgm6mb", "musescore")
TEST_SOUNDFONT = "fluidr3"


def prepare_soundfonts(cache: str | Path, names=tuple(SOUNDFONTS)) -> tuple[dict, dict]:
    """({name: path of the .sf2}, {name: provenance for the manifest})."""
    wanted = [SOUNDFONTS[n] for n in names]
    packages = prepare_packages(cache, [s.package for s in wanted if s.package])
    paths, info = {}, {}
    for sf in wanted:
        if sf.package is None:
            path = Path(soundfont_path())
            info[sf.name] = {"source": "pretty_midi", "file": sf.file, "sha256": sha256_of(path)}
        else:
            pkg = packages[sf.package]
            found = sorted(pkg.tree.rglob(sf.file))
            if not found:
                raise PackageError(f"{pkg.deb} has no {sf.file}; delete it and rerun")
            path = found[0]
            info[sf.name] = {"package": sf.package, "file": sf.file, **pkg.as_dict()}
        paths[sf.name] = str(path)
    return paths, info

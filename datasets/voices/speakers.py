"""Who speaks in each recording, read from the package layout, and the speaker split.

- klettres-data: `usr/share/klettres/<lang>/{alpha,syllab}/<file>`: one speaker per
  language folder (`klettres.<lang>`).
- ktuberling-data: `usr/share/ktuberling/sounds/<lang>/<file>`: one speaker per language;
  the Serbian script variants (`sr@latin`, ...) hold the same recordings and are one
  speaker (`ktuberling.<lang>`).
- fillets-ng-data-<lang>: `usr/share/games/fillets-ng/sound/<level>/<lang>/<file>.ogg`,
  named `<level>-<character>-<line>.ogg` or `<character>-<line>.ogg`: one voice actor per
  character code and language (`fillets<lang>.<character>`). Character codes are short
  (`m`, `v`, `hs`, `pap`, `b1`): a code that is not a letter and at most two more letters
  or digits (`init-0-3.ogg`, `zelena-ted.ogg`) names no known speaker and is not used.

Speaker ids contain neither `-` nor `_`, so they can stand in WSJ0-style file names.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import numpy as np

AUDIO_SUFFIXES = (".ogg", ".wav", ".opus", ".flac")
SPLITS = ("tr", "cv", "tt")
HOLDOUT_FRACTIONS = {"tt": 0.15, "cv": 0.10}
# A voice with more than this share of its package's audio stays in training: holding
# out one of the two leads of a fillets language would remove a quarter of the data.
MAX_HELD_OUT_SHARE = 0.25
_SPLIT_SEED = 20261204  # fixed: held-out speakers are the same in every corpus


def _clean(code: str) -> str:
    return re.sub(r"[^a-z0-9]", "", code.lower())


def speaker_of(package: str, relpath: str) -> str | None:
    """Speaker id of an audio file at `relpath` inside `package`'s tree, or None."""
    parts = PurePosixPath(relpath).parts
    if PurePosixPath(relpath).suffix.lower() not in AUDIO_SUFFIXES:
        return None
    if package == "klettres-data":
        if len(parts) == 6 and parts[:3] == ("usr", "share", "klettres"):
            return f"klettres.{_clean(parts[3])}"
        return None
    if package == "ktuberling-data":
        if len(parts) == 6 and parts[:4] == ("usr", "share", "ktuberling", "sounds"):
            return f"ktuberling.{_clean(parts[4].split('@')[0])}"
        return None
    m = re.fullmatch(r"fillets-ng-data-(\w+)", package)
    if m:
        lang = m.group(1)
        if parts[:5] != ("usr", "share", "games", "fillets-ng", "sound") or parts[-2] != lang:
            return None
        fields = PurePosixPath(relpath).stem.split("-")
        code = fields[1] if len(fields) >= 3 else fields[0] if len(fields) == 2 else ""
        if not re.fullmatch(r"[a-z][a-z0-9]{0,2}", code):
            return None
        return f"fillets{_clean(lang)}.{_clean(code)}"
    raise ValueError(f"no speaker rule for the package {package!r}")


def package_of(speaker: str) -> str:
    """The package family of a speaker id (klettres, ktuberling, filletscs, ...)."""
    return speaker.split(".")[0]


def assign_splits(seconds: dict[str, float]) -> dict[str, list[str]]:
    """Speaker-disjoint tr / cv / tt lists from {speaker: seconds of audio}.

    Within each package, a fixed permutation of the speakers that hold at most
    MAX_HELD_OUT_SHARE of its audio gives round(15 %) of the package's speakers to tt
    and round(10 %) to cv (at least one each when the package has three or more
    speakers); all others train.
    """
    splits = {s: [] for s in SPLITS}
    families = sorted({package_of(s) for s in seconds})
    for fam in families:
        spk = sorted(s for s in seconds if package_of(s) == fam)
        total = sum(seconds[s] for s in spk)
        eligible = [s for s in spk if seconds[s] <= MAX_HELD_OUT_SHARE * total]
        rng = np.random.default_rng([_SPLIT_SEED, sum(fam.encode())])
        order = [eligible[i] for i in rng.permutation(len(eligible))]
        n_held = {}
        for split, frac in HOLDOUT_FRACTIONS.items():
            n_held[split] = max(1 if len(spk) >= 3 else 0, int(round(frac * len(spk))))
        n_tt, n_cv = n_held["tt"], n_held["cv"]
        n_tt = min(n_tt, len(order))
        n_cv = min(n_cv, len(order) - n_tt)
        splits["tt"] += order[:n_tt]
        splits["cv"] += order[n_tt:n_tt + n_cv]
        held = set(order[: n_tt + n_cv])
        splits["tr"] += [s for s in spk if s not in held]
    return {k: sorted(v) for k, v in splits.items()}

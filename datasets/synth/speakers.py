"""The table of synthetic speakers and their split into tr / cv / tt.

A speaker is an English accent voice of eSpeak NG combined with a voice
variant and its own pitch, pitch range and speaking rate. Variants are
assigned to one split each, so tr, cv and tt share no speaker and not even a
voice timbre (like WSJ0-mix's unseen test speakers). The table is fixed (its
own seed), so speaker ids mean the same voice in every corpus.
"""

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

ACCENTS = (
    "en-us", "en-us-nyc", "en", "en-gb-x-rp", "en-gb-scotland",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)  # fmt: skip

# Variants shipped with eSpeak NG 1.52 (voices/!v). Variants with a `breath`
# setting are left out: their aspiration noise is not reproducible run to run.
FEMALE_VARIANTS = (
    "Andrea", "Annie", "anika", "anikaRobot", "aunty", "belinda", "f1", "f4",
    "grandma", "linda", "steph", "steph2", "steph3",
)  # fmt: skip
MALE_VARIANTS = (
    "Alex", "Andy", "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique",
    "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen",
    "RicishayMax", "RicishayMax2", "RicishayMax3", "Tweaky", "UniRobot", "adam",
    "announcer", "antonio", "benjamin", "boris", "croak", "david", "ed", "edward",
    "edward2", "fast", "grandpa", "gustave", "ian", "iven", "iven2", "iven3",
    "iven4", "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5",
    "klatt6", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max",
    "michel", "miguel", "mike2", "norbert", "pablo", "paul", "pedro", "quincy",
    "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4",
    "robosoft5", "robosoft6", "robosoft7", "robosoft8", "shelby", "travis", "zac",
)  # fmt: skip

SPLIT_FRACTIONS = {"tr": 0.7, "cv": 0.15, "tt": 0.15}
_TABLE_SEED = 20230604  # fixed: the table does not depend on a corpus seed


@dataclass(frozen=True)
class Speaker:
    id: str
    voice: str  # espeak voice name "<accent>+<variant>"
    accent: str
    variant: str
    gender: str
    pitch: int  # espeak 0..100
    range: int  # espeak 0..100
    rate: int  # words per minute
    split: str

    def as_dict(self) -> dict:
        return asdict(self)


def _split_variants(variants, rng) -> dict[str, str]:
    order = [variants[i] for i in rng.permutation(len(variants))]
    n_tr = round(SPLIT_FRACTIONS["tr"] * len(order))
    n_cv = max(1, round(SPLIT_FRACTIONS["cv"] * len(order)))
    return {v: "tr" if i < n_tr else "cv" if i < n_tr + n_cv else "tt" for i, v in enumerate(order)}


@lru_cache(maxsize=1)
def speaker_table() -> tuple[Speaker, ...]:
    """All speakers, in a fixed order with ids s000, s001, ..."""
    rng = np.random.default_rng(_TABLE_SEED)
    # Split women and men separately so that every split has both.
    split_of = {**_split_variants(FEMALE_VARIANTS, rng), **_split_variants(MALE_VARIANTS, rng)}
    speakers = []
    for variant in sorted(split_of):
        gender = "f" if variant in FEMALE_VARIANTS else "m"
        for accent in ACCENTS:
            speakers.append(
                Speaker(
                    id=f"s{len(speakers):03d}",
                    voice=f"{accent}+{variant}",
                    accent=accent,
                    variant=variant,
                    gender=gender,
                    pitch=int(rng.integers(30, 71)),
                    range=int(rng.integers(30, 81)),
                    rate=int(rng.integers(140, 196)),
                    split=split_of[variant],
                )
            )
    return tuple(speakers)


def speakers_of_split(split: str) -> tuple[Speaker, ...]:
    """Speakers of "tr", "cv" or "tt" (VCTK-DEMAND's train / test use tr / tt)."""
    alias = {"train": "tr", "valid": "cv", "test": "tt"}
    split = alias.get(split, split)
    found = tuple(s for s in speaker_table() if s.split == split)
    if not found:
        raise ValueError(f"unknown split {split!r}")
    return found


def speaker_by_id(speaker_id: str) -> Speaker:
    return speaker_table()[int(speaker_id[1:])]

"""A small English-like sentence grammar (own word lists, MIT)."""

import numpy as np

_DET = ["the", "a", "every", "one", "that", "this", "my", "our", "their", "some"]
_ADJ = [
    "old", "quiet", "bright", "small", "heavy", "green", "warm", "narrow", "busy",
    "gentle", "broken", "silver", "early", "distant", "simple", "yellow", "careful",
    "empty", "wooden", "sudden", "open", "northern", "clever", "tired", "golden",
]  # fmt: skip
_NOUN = [
    "river", "teacher", "window", "market", "engine", "garden", "letter", "doctor",
    "village", "bridge", "station", "painter", "kitchen", "report", "island",
    "machine", "farmer", "bottle", "council", "journey", "student", "harbour",
    "company", "picture", "captain", "budget", "morning", "neighbour", "signal",
    "mountain", "table", "program", "storm", "lawyer", "basket", "question",
]  # fmt: skip
_VERB = [
    "found", "moved", "carried", "painted", "opened", "followed", "watched",
    "built", "closed", "answered", "reached", "cleaned", "covered", "counted",
    "described", "borrowed", "visited", "noticed", "sold", "repaired", "signed",
]  # fmt: skip
_ADV = [
    "slowly", "again", "yesterday", "quickly", "today", "early", "quietly",
    "twice", "later", "finally", "carefully", "at once", "last week",
]  # fmt: skip
_PREP = ["near", "behind", "under", "beside", "across", "inside", "beyond", "after"]
_NAME = [
    "Anna", "David", "Maria", "Peter", "Laura", "Thomas", "Helen", "Robert",
    "Sofia", "James", "Nora", "Victor", "Clara", "Samuel", "Irene", "Oscar",
]  # fmt: skip
_NUMBER = ["two", "three", "four", "seven", "ten", "twelve", "twenty", "fifty", "a hundred"]
_CONJ = ["and", "but", "while", "because", "so", "although", "when"]


def _pick(rng: np.random.Generator, words: list[str]) -> str:
    return words[int(rng.integers(len(words)))]


def _noun_phrase(rng) -> str:
    if rng.random() < 0.15:
        return _pick(rng, _NAME)
    if rng.random() < 0.15:
        return f"{_pick(rng, _NUMBER)} {_pick(rng, _ADJ)} {_pick(rng, _NOUN)}s"
    if rng.random() < 0.5:
        return f"{_pick(rng, _DET)} {_pick(rng, _ADJ)} {_pick(rng, _NOUN)}"
    return f"{_pick(rng, _DET)} {_pick(rng, _NOUN)}"


def _clause(rng) -> str:
    kind = rng.integers(4)
    if kind == 0:
        return f"{_noun_phrase(rng)} {_pick(rng, _VERB)} {_noun_phrase(rng)}"
    if kind == 1:
        return (
            f"{_noun_phrase(rng)} {_pick(rng, _VERB)} {_noun_phrase(rng)} "
            f"{_pick(rng, _PREP)} {_noun_phrase(rng)}"
        )
    if kind == 2:
        return f"{_noun_phrase(rng)} {_pick(rng, _VERB)} {_noun_phrase(rng)} {_pick(rng, _ADV)}"
    return f"{_pick(rng, _NAME)} said that {_noun_phrase(rng)} {_pick(rng, _VERB)} it"


def sentence(rng: np.random.Generator, n_words: int) -> str:
    """A sentence of about `n_words` words (whole clauses, at least one)."""
    clauses = [_clause(rng)]
    while sum(len(c.split()) for c in clauses) < n_words:
        clauses.append(f"{_pick(rng, _CONJ)} {_clause(rng)}")
    text = ", ".join(clauses) if len(clauses) < 3 else ". ".join(clauses)
    text = ". ".join(s[:1].upper() + s[1:] for s in text.split(". "))
    return text + ("?" if rng.random() < 0.1 else ".")

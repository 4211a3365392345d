"""Recorded-voice corpus: human speech from Debian packages, mixed in the WSJ0-mix layout.

    python -m datasets.voices --out data/voices

See `datasets/voices/corpus.py` (mixing), `packages.py` (fetching) and `speakers.py`
(speaker identity and the speaker-disjoint split).
"""

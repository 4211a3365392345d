"""Offline generator of synthetic corpora in the layouts of WSJ0-mix, VCTK-DEMAND and MUSDB18-HQ.

Run `python -m datasets.synth --help`; the functions below are the same
entry points for Python code.
"""

from datasets.synth.musdb_corpus import generate_musdb
from datasets.synth.vctk_corpus import generate_vctk_demand
from datasets.synth.wsj0mix_corpus import generate_wsj0mix

__all__ = ["generate_musdb", "generate_vctk_demand", "generate_wsj0mix"]

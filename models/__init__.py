"""Score networks (NCSN++, CDiffuse) and the waveform-level score model wrappers."""

from models.cdiffuse import CDiffuse
from models.ncsnpp import NCSNpp
from models.score_model import STFTScoreModel, WaveformScoreModel

__all__ = ["CDiffuse", "NCSNpp", "STFTScoreModel", "WaveformScoreModel"]

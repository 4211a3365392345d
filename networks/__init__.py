"""Score networks: the backbones (NCSN++, the frame BLSTM, CDiffuse), their layers, the STFT
transforms and the waveform-level score model wrappers. Plain ``nn.Module``s that know
nothing of SDEs, training or checkpoints (``models/`` builds the Lightning system on them)."""

from networks.cdiffuse import CDiffuse
from networks.frame_rnn import FrameBLSTM
from networks.ncsnpp import NCSNpp
from networks.score_model import STFTScoreModel, WaveformScoreModel

__all__ = ["CDiffuse", "FrameBLSTM", "NCSNpp", "STFTScoreModel", "WaveformScoreModel"]

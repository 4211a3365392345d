"""Deterministic float32 WAV writing with atomic rename.

libsndfile adds a PEAK chunk holding a time stamp to float WAV files, which
breaks byte-identical output, so the small RIFF header is written here.
"""

import os
import struct
from pathlib import Path

import numpy as np

_FORMAT_IEEE_FLOAT = 3


def wav_bytes(data: np.ndarray, fs: int) -> bytes:
    """Encode `data` (L,) or (L, C) as a 32-bit float WAV file."""
    x = np.asarray(data, dtype="<f4")
    if x.ndim == 1:
        x = x[:, None]
    n_frames, n_chan = x.shape
    payload = np.ascontiguousarray(x).tobytes()
    block = 4 * n_chan
    fmt = struct.pack("<HHIIHHH", _FORMAT_IEEE_FLOAT, n_chan, fs, fs * block, block, 32, 0)
    # A `fact` chunk is required by the WAV spec for non-PCM data.
    chunks = [
        b"fmt " + struct.pack("<I", len(fmt)) + fmt,
        b"fact" + struct.pack("<II", 4, n_frames),
        b"data" + struct.pack("<I", len(payload)) + payload,
    ]
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_atomic(path: str | Path, content: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)


def write_wav(path: str | Path, data: np.ndarray, fs: int) -> None:
    """Atomically write float32 audio (L,) or (L, C) at `fs` Hz."""
    write_atomic(path, wav_bytes(data, fs))

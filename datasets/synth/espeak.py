"""eSpeak NG text-to-speech, driven through ctypes (or an optional `espeak-ng` binary).

The library keeps state between utterances (pitch flutter phase, buffers), so
the same call gives slightly different samples depending on what was said
before. For byte-identical corpora each utterance loads a fresh copy of the
library (dlopen/dlclose, a few ms) and seeds libc's rand(), which eSpeak uses.
"""

import ctypes
import ctypes.util
import io
import os
import shutil
import subprocess

import numpy as np

ESPEAK_FS = 22050
_AUDIO_OUTPUT_RETRIEVAL = 1
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit()
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _paths() -> tuple[str, str]:
    import espeakng_loader

    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def data_dir() -> str:
    """The espeak-ng-data folder (voices, variants) of the library backend."""
    return _paths()[1]


def _synth_library(text: str, voice: str, rate: int, pitch: int, range_: int, seed: int):
    lib_path, data_path = _paths()
    chunks = []

    def collect(wav, n, _events):
        if n > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(collect)
    lib = ctypes.CDLL(lib_path, mode=os.RTLD_LOCAL)
    try:
        parent = os.path.dirname(data_path).encode()
        fs = lib.espeak_Initialize(_AUDIO_OUTPUT_RETRIEVAL, 0, parent, _INITIALIZE_DONT_EXIT)
        if fs != ESPEAK_FS:
            raise RuntimeError(f"espeak_Initialize failed ({fs}) with data in {data_path}")
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"unknown espeak voice {voice!r}")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, range_), (_VOLUME, 100)):
            lib.espeak_SetParameter(param, int(value), 0)
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        raw = text.encode()
        err = lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err}")
    finally:
        lib.espeak_Terminate()
        # Unload so that the next utterance starts from pristine static state.
        import _ctypes

        _ctypes.dlclose(lib._handle)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _synth_cli(text: str, voice: str, rate: int, pitch: int):
    import soundfile

    # The pitch range has no portable command-line flag, so it is left at the default.
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text]
    wav = subprocess.run(cmd, check=True, capture_output=True).stdout
    x, fs = soundfile.read(io.BytesIO(wav), dtype="int16")
    if fs != ESPEAK_FS:
        raise RuntimeError(f"espeak-ng returned {fs} Hz")
    return x


def synthesize(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    range_: int = 50,
    seed: int = 0,
    backend: str = "library",
) -> np.ndarray:
    """Speak `text`; returns mono int16 samples at 22050 Hz.

    `voice` is "<language>+<variant>" (e.g. "en-us+m3"); rate in words per
    minute, pitch and range in 0..100 as in espeak. `backend="cli"` uses a
    system `espeak-ng` binary when one is installed (its version may differ,
    so output is only reproducible on the same installation).
    """
    if backend == "library":
        return _synth_library(text, voice, rate, pitch, range_, seed)
    if backend == "cli":
        if shutil.which("espeak-ng") is None:
            raise FileNotFoundError("no espeak-ng binary on PATH")
        return _synth_cli(text, voice, rate, pitch)
    raise ValueError(f"unknown backend {backend!r}")

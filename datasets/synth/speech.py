"""Synthetic utterances: a speaker says a sentence, with a low noise floor, at any rate."""

from dataclasses import dataclass

import numpy as np
import soxr

from datasets.synth.espeak import ESPEAK_FS, synthesize
from datasets.synth.sentences import sentence
from datasets.synth.speakers import Speaker

FLOOR_DB = -60.0  # noise floor relative to the utterance RMS (no digital silence)


@dataclass(frozen=True)
class UtterancePlan:
    """Everything needed to render one utterance; drawn before any synthesis."""

    speaker: Speaker
    text: str
    pitch: int
    rate: int
    seed: int  # seeds eSpeak's rand() and the noise floor

    def as_dict(self) -> dict:
        return {"speaker": self.speaker.id, "text": self.text, "pitch": self.pitch,
                "rate": self.rate, "seed": self.seed}  # fmt: skip


def plan_utterance(rng: np.random.Generator, speaker: Speaker, words: tuple[int, int]):
    """Draw sentence and small per-utterance prosody changes around the speaker's own."""
    n_words = int(rng.integers(words[0], words[1] + 1))
    return UtterancePlan(
        speaker=speaker,
        text=sentence(rng, n_words),
        pitch=int(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 100)),
        rate=int(speaker.rate * rng.uniform(0.95, 1.05)),
        seed=int(rng.integers(2**31)),
    )


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def render_utterance(
    plan: UtterancePlan,
    fs_list,
    max_seconds: float | None = None,
    backend: str = "library",
) -> dict[int, np.ndarray]:
    """Synthesize once, add the noise floor, resample; float64 at unit RMS per rate."""
    s = plan.speaker
    x = synthesize(plan.text, s.voice, plan.rate, plan.pitch, s.range, plan.seed, backend)
    x = x.astype(np.float64) / 32768.0
    if x.size == 0:
        raise RuntimeError(f"eSpeak produced no audio for {plan}")
    if max_seconds is not None and x.size > max_seconds * ESPEAK_FS:
        x = x[: int(max_seconds * ESPEAK_FS)].copy()
        n_fade = min(x.size, int(0.02 * ESPEAK_FS))  # avoid a click at the cut
        x[-n_fade:] *= np.linspace(1.0, 0.0, n_fade)
    rng = np.random.default_rng(plan.seed)
    x = x + rng.standard_normal(x.size) * rms(x) * 10 ** (FLOOR_DB / 20)
    out = {}
    for fs in fs_list:
        y = x if fs == ESPEAK_FS else soxr.resample(x, ESPEAK_FS, fs, quality="HQ")
        out[fs] = y / rms(y)
    return out

"""Speech building blocks of datasets.synth: speakers, sentences, eSpeak, WAV writing."""

import io

import numpy as np
import pytest
import soundfile as sf

from datasets.synth.espeak import ESPEAK_FS, synthesize
from datasets.synth.sentences import sentence
from datasets.synth.speakers import speaker_by_id, speaker_table, speakers_of_split
from datasets.synth.speech import FLOOR_DB, plan_utterance, render_utterance
from datasets.synth.wavio import wav_bytes, write_wav


def test_speaker_table_has_100_distinct_disjoint_speakers():
    table = speaker_table()
    voices = {(s.voice, s.pitch, s.range, s.rate) for s in table}
    assert len(voices) == len(table) >= 100
    assert len({s.id for s in table}) == len(table)
    splits = {sp: {s.variant for s in speakers_of_split(sp)} for sp in ("tr", "cv", "tt")}
    assert not splits["tr"] & splits["cv"] and not splits["tr"] & splits["tt"]
    assert not splits["cv"] & splits["tt"]
    for sp in ("tr", "cv", "tt"):
        genders = {s.gender for s in speakers_of_split(sp)}
        assert genders == {"f", "m"}, sp
    assert speaker_by_id(table[17].id) == table[17]


def test_sentences_reach_word_count_and_vary():
    rng = np.random.default_rng(0)
    texts = [sentence(rng, n) for n in (3, 8, 15) for _ in range(5)]
    for n, text in zip([3] * 5 + [8] * 5 + [15] * 5, texts):
        assert len(text.split()) >= n
        assert text[0].isupper() and text[-1] in ".?"
    assert len(set(texts)) == len(texts)


def test_espeak_is_deterministic_and_voices_differ():
    text = "The old bridge opened again."
    a = synthesize(text, "en-us+m3", 170, 50, 50, seed=3)
    synthesize("Something else in between.", "en-gb-scotland+klatt2", 150, 40, 60, seed=1)
    b = synthesize(text, "en-us+m3", 170, 50, 50, seed=3)
    assert a.dtype == np.int16 and a.size > 0.5 * ESPEAK_FS
    np.testing.assert_array_equal(a, b)
    c = synthesize(text, "en-us+f4", 170, 50, 50, seed=3)
    assert a.size != c.size or not np.array_equal(a, c)
    with pytest.raises(ValueError):
        synthesize(text, "xx-nonexistent-voice")


def test_rendered_utterance_rates_level_and_noise_floor():
    spk = speakers_of_split("tt")[0]
    plan = plan_utterance(np.random.default_rng(1), spk, (3, 4))
    out = render_utterance(plan, [8000, 16000], max_seconds=1.0)
    for fs, x in out.items():
        assert abs(x.size - fs * 1.0) <= 2  # cropped to 1 s, resampled
        assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0)
        assert np.count_nonzero(x == 0) == 0  # a noise floor, never digital silence
        quiet = np.sort(np.abs(x))[: x.size // 100]
        assert np.mean(quiet) > 10 ** ((FLOOR_DB - 30) / 20)


def test_wav_writer_round_trip_and_bytes(tmp_path):
    x = np.random.default_rng(0).standard_normal((1000, 2)).astype(np.float32) * 0.1
    data, fs = sf.read(io.BytesIO(wav_bytes(x, 44100)), dtype="float32")
    assert fs == 44100
    np.testing.assert_array_equal(data, x)
    assert sf.info(io.BytesIO(wav_bytes(x[:, 0], 8000))).subtype == "FLOAT"
    write_wav(tmp_path / "a" / "x.wav", x, 44100)
    assert (tmp_path / "a" / "x.wav").read_bytes() == wav_bytes(x, 44100)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.wav"]  # no temp file left

"""Generation speed of the synthetic corpora (seconds of audio per second of wall time).

Audio seconds count each item once: the mixture of a speech mix (one rate, one
cut), the noisy file of an enhancement pair, the mixture of a music track.
Run: `python bench/bench_synth.py [--items 20] [--tracks 4] [--workers 1]`.
"""

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf

from datasets.synth import generate_musdb, generate_vctk_demand, generate_wsj0mix


def _audio_seconds(files) -> float:
    return sum(sf.info(str(p)).duration for p in files)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20, help="speech / enhancement items")
    ap.add_argument("--tracks", type=int, default=4, help="music tracks")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per music track")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    common = {"workers": args.workers, "progress": False}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k in (2, 3):
            wall = _timed(lambda k=k: generate_wsj0mix(
                root / "wsj", k, (8000,), ("min",), {"tr": args.items}, **common))  # fmt: skip
            files = (root / f"wsj/{k}speakers/wav8k/min/tr/mix").glob("*.wav")
            rows.append((f"speech {k}-mix (8k, min)", args.items, _audio_seconds(files), wall))
        wall = _timed(lambda: generate_vctk_demand(root / "vctk", {"train": args.items}, **common))
        files = (root / "vctk/train/noisy").glob("*.wav")
        rows.append(("enhancement (16k)", args.items, _audio_seconds(files), wall))
        wall = _timed(lambda: generate_musdb(
            root / "musdb", {"train": args.tracks}, 0, args.duration, **common))  # fmt: skip
        files = (root / "musdb/train").glob("*/mixture.wav")
        rows.append(("music (44.1k stereo, 4 stems)", args.tracks, _audio_seconds(files), wall))
    print(f"workers={args.workers}")
    print(f"{'corpus':32s} {'items':>6s} {'audio s':>9s} {'wall s':>8s} {'audio s / wall s':>17s}")
    for name, n, audio, wall in rows:
        print(f"{name:32s} {n:6d} {audio:9.1f} {wall:8.2f} {audio / wall:17.1f}")


if __name__ == "__main__":
    main()

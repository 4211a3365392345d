"""`python -m datasets.synth`: argument wiring, resuming an interrupted run."""

import json

import pytest

from datasets.synth.__main__ import build_parser, main


def test_speech_cli_writes_every_rate_and_cut_and_resumes(tmp_path):
    argv = ["speech", "--out", str(tmp_path), "--n-tr", "1", "--n-cv", "0", "--n-tt", "1",
            "--fs", "8000", "16000", "--cut", "min", "max", "--words", "2", "2",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    root = tmp_path / "2speakers"
    wavs = sorted(root.rglob("*.wav"))
    assert len(wavs) == 2 * 2 * 2 * 3  # rates x cuts x items x (mix, s1, s2)
    meta = json.loads((root / "manifest.json").read_text())
    assert meta["outputs"] == ["wav16k/max", "wav16k/min", "wav8k/max", "wav8k/min"]
    # K keeps its key of the corpora generated so far, which are reused only on equal params
    assert meta["params"]["n_spkr"] == 2 and "n_sources" not in meta["params"]
    # an interrupted run: one mixture missing, the stub manifest left behind
    victim = next(root.glob("wav16k/min/tt/mix/*.wav"))
    content = victim.read_bytes()
    victim.unlink()
    (root / "manifest.json").write_text(json.dumps({**meta, "status": "incomplete"}))
    assert main(argv) == 0
    assert victim.read_bytes() == content
    assert json.loads((root / "manifest.json").read_text()) == meta
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]


def test_parser_defaults_and_choices():
    args = build_parser().parse_args(["music"])
    assert (args.out, args.n_train, args.n_test, args.n_valid) == ("data/synth/musdb18hq", 8, 4, 2)
    args = build_parser().parse_args(["enhancement"])
    assert args.out == "data/synth/VCTK_DEMAND" and args.fs == 16000
    assert not set(args.train_noises) & set(args.test_noises)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["speech", "--cut", "middle"])


@pytest.mark.parametrize("command", ["synth", "voices"])
def test_n_sources_flag_and_its_old_spelling(command, capsys):
    from datasets.voices.__main__ import build_parser as voices_parser

    parser, head = (build_parser(), ["speech"]) if command == "synth" else (voices_parser(), [])
    assert parser.parse_args(head).n_sources == [2]
    assert parser.parse_args([*head, "--n-sources", "2", "3"]).n_sources == [2, 3]
    assert parser.parse_args([*head, "--n-spkr", "3"]).n_sources == [3]  # the old flag
    with pytest.raises(SystemExit):
        parser.parse_args([*head, "--n-sources", "4"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args([*head, "--help"])
    shown = capsys.readouterr().out
    assert "--n-sources" in shown and "--n-spkr" not in shown  # the old one is hidden

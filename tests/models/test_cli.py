"""`fleetloop models`: every command has help; show prints and verifies; build-initial refuses overwrites."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from models.cli import build_parser, run
from models.errors import VersionExistsError
from shared.errors import FleetloopError, ModelIntegrityError
from shared.manifest import MODEL_FILE


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_and_option_has_help() -> None:
    parser = build_parser("fleetloop models")
    subs = _subcommands(parser)
    assert set(subs) == {"build-initial", "show"}
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert all(choice.help for choice in action._choices_actions)
    for sub in subs.values():
        assert sub.description
        for option in sub._actions:
            assert option.help, (sub.prog, option.dest)


def test_show_prints_the_summary(initial_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(build_parser("fleetloop models").parse_args(["show", str(initial_model_dir)])) == 0
    out = capsys.readouterr().out
    assert "version      v1" in out and "recipe:initial" in out and "site-b/compressor" in out


def test_show_json(initial_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(build_parser("fleetloop models").parse_args(["show", str(initial_model_dir), "--json"])) == 0
    assert '"onnx_sha256"' in capsys.readouterr().out


def test_show_refuses_a_tampered_copy(initial_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    copy.mkdir()
    for f in initial_model_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelIntegrityError):
        run(build_parser("fleetloop models").parse_args(["show", str(copy)]))


def test_build_initial_refuses_an_existing_version(initial_model_dir: Path) -> None:
    args = build_parser("fleetloop models").parse_args(["build-initial", "--out", str(initial_model_dir)])
    assert (args.seed, args.version) == (7, "v1")
    with pytest.raises(VersionExistsError) as caught:
        run(args)
    assert isinstance(caught.value, FleetloopError)  # fleetloop.cli turns it into a message and exit 2


def test_build_initial_if_missing_keeps_an_existing_version(initial_model_dir, capsys):
    from fleetloop.cli import main

    before = (initial_model_dir / "model.onnx").read_bytes()
    assert main(["models", "build-initial", "--out", str(initial_model_dir), "--if-missing"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (initial_model_dir / "model.onnx").read_bytes() == before

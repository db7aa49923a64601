"""Docs are tested: every CLI command has help text and is in the README; CI runs the README's test command."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from fleetloop.cli import GROUPS, load_group

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _groups():
    for name, (module, _, _) in GROUPS.items():
        if importlib.util.find_spec(module) is not None:
            yield name


@pytest.mark.parametrize("group", list(_groups()))
def test_every_command_has_help_and_is_documented(group):
    parser = load_group(group).build_parser(f"fleetloop {group}")
    assert parser.description, f"fleetloop {group} has no description"
    subs = _subcommands(parser)
    for name, sub in subs.items():
        choice_help = [a.help for a in parser._subparsers._group_actions[0]._choices_actions
                       if a.dest == name]
        assert choice_help and choice_help[0], f"fleetloop {group} {name} has no help text"
        assert sub.format_help()
        assert f"fleetloop {group} {name}" in README, f"README does not document 'fleetloop {group} {name}'"
    if not subs:
        assert f"fleetloop {group}" in README


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == "exec make test"


def test_missing_extra_names_what_to_install(monkeypatch, capsys):
    import importlib.util

    from fleetloop.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in {"fastapi", "sklearn"} else real(name, *a))
    for group in ("hub", "models", "demo"):
        assert main([group, "--help"]) == 2
        err = capsys.readouterr().err
        assert "pip install 'fleetloop[hub]'" in err and "fastapi" in err
    assert load_group("agent").build_parser("fleetloop agent").prog == "fleetloop agent"  # needs neither

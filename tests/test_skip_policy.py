"""The skip policy: in CI a skip that is not on the allow-list fails the run, and absent datasets stop it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.policy import allowed_patterns, unlisted

REPO = Path(__file__).resolve().parents[1]


def run_pytest(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_planted.py").write_text(body)
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CI", "FLEETLOOP_STRICT_SKIPS", "FLEETLOOP_REQUIRE_DATASETS")}
    environ.update(env, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.fixtures.policy",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=environ, timeout=120, check=False)


SKIPPING = "import pytest\n\ndef test_planted():\n    pytest.skip('planted skip')\n"


def test_an_unlisted_skip_fails_a_strict_run_and_is_only_reported_in_a_lenient_one(tmp_path: Path) -> None:
    strict = run_pytest(tmp_path, SKIPPING, CI="true")
    assert strict.returncode == 1, strict.stdout
    assert "NOT ALLOWED: test_planted.py::test_planted: planted skip" in strict.stdout
    assert "1 skip(s) not on skips-allowed.txt" in strict.stdout
    lenient = run_pytest(tmp_path, SKIPPING)
    assert lenient.returncode == 0, lenient.stdout
    assert "1 skipped, 1 not on the allow-list" in lenient.stdout


def test_a_strict_run_stops_at_once_without_the_datasets(tmp_path: Path) -> None:
    passing = "def test_ok():\n    assert True\n"
    out = run_pytest(tmp_path, passing, CI="true", FLEETLOOP_DATASETS=str(tmp_path / "absent"))
    assert out.returncode == 4, out.stdout + out.stderr
    assert f"datasets folder {tmp_path / 'absent'} is missing" in out.stderr
    assert run_pytest(tmp_path, passing, FLEETLOOP_DATASETS=str(tmp_path / "absent")).returncode == 0


def test_allow_list_patterns_match_node_and_reason(tmp_path: Path) -> None:
    listed = tmp_path / "allowed.txt"
    listed.write_text("# why: the GPU tests need a GPU\ntests/gpu/.*: no GPU\n\n")
    patterns = allowed_patterns(listed)
    assert [p.pattern for p in patterns] == ["tests/gpu/.*: no GPU"]
    skips = [("tests/gpu/test_x.py::test_a", "no GPU here"), ("tests/test_y.py::test_b", "no GPU here")]
    assert unlisted(skips, patterns) == [skips[1]]
    assert unlisted(skips, [re.compile(".*")]) == []


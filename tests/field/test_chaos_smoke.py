"""A short chaos run (bench/chaos.py) as a smoke test: the faults happen, nothing is lost, duplicated or served
unapproved. The full run is a benchmark (bench/README.md), not part of the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("published", "stored", "lost", "duplicates", "unapproved_served", "agent_restarts", "hub_restarts",
        "broker_restarts", "duration_s", "seed")


def test_a_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--duration", "15", "--agents", "2", "--seed", "3",
         "--ingest-workers", "1", "--no-rollout", "--no-disk", "--workdir", str(tmp_path / "chaos")],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert out.stdout.strip(), out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(KEYS) <= set(result)
    assert result["published"] > 0 and result["stored"] == result["published"], out.stdout
    assert (result["lost"], result["duplicates"], result["unapproved_served"]) == (0, 0, 0), out.stdout
    assert out.returncode == 0, out.stderr[-3000:]

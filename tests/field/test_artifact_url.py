"""The artifact URL devices are given (issue 11, item 2): ``hub serve --port 18000`` kept handing out port 8000,
every device failed its download and the rollout rolled the candidate back as if the model were bad.

Now the URL is derived from the address the hub serves on unless set, and a rollout whose URL does not answer
from the hub itself is refused before anything is assigned.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from fleetloop.devbroker import free_port
from shared.manifest import MANIFEST_FILE, MODEL_FILE
from tests.field.harness import FieldFleet

pytestmark = pytest.mark.slow


def register_candidate(fleet: FieldFleet, tmp: Path, version: str) -> None:
    """The initial model under another version, registered through the hub as a candidate (gate skipped)."""
    out = tmp / version
    out.mkdir(parents=True)
    shutil.copyfile(fleet.initial_model / MODEL_FILE, out / MODEL_FILE)
    manifest = json.loads((fleet.initial_model / MANIFEST_FILE).read_text())
    (out / MANIFEST_FILE).write_text(json.dumps({**manifest, "version": version}, indent=1))
    fleet.submit_model(out, "field test: no labels to gate it on", skip_gate=True)


def serving(fleet: FieldFleet, device: str) -> str | None:
    with sqlite3.connect(f"file:{fleet.agent_db(device)}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM state WHERE key = 'model.active'").fetchone()
    return row[0] if row else None


def test_a_hub_on_another_port_hands_out_an_artifact_url_on_that_port(field_fleet: FieldFleet, tmp_path: Path) -> None:
    fleet = field_fleet
    assert fleet.artifact_base_url is None and fleet.api_port != 8000  # nothing set: the hub derives it
    fleet.start_hub()
    register_candidate(fleet, tmp_path, "v2")
    fleet.start_agent("dev-0")
    fleet.wait(lambda: fleet.agent_db("dev-0").exists() and serving(fleet, "dev-0") == "v1", "dev-0 serving v1")
    with fleet.api("operator") as op:
        started = op.post("/rollouts", json={"candidate": "v2", "canary": ["dev-0"], "reason": "field"})
        assert started.status_code == 201, started.text  # before: 201 too, with a URL on port 8000
        fleet.wait(lambda: serving(fleet, "dev-0") == "v2", "dev-0 to fetch and serve v2")  # before: refused
        rollout = op.get(f"/rollouts/{started.json()['id']}").json()
    assert rollout["status"] == "running", rollout


def test_a_rollout_whose_artifact_url_does_not_answer_is_refused_with_the_reason(
    field_fleet: FieldFleet, tmp_path: Path
) -> None:
    fleet = field_fleet
    fleet.artifact_base_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fleet.start_hub()
    register_candidate(fleet, tmp_path, "v2")
    with fleet.api("operator") as op:
        refused = op.post("/rollouts", json={"candidate": "v2", "canary": 0.5, "reason": "field"})
        assert refused.status_code == 409, refused.text  # before: 201, then every device failed its download
        detail = refused.json()["detail"]
        assert fleet.artifact_base_url in detail and "artifact_base_url" in detail
        assert op.get("/rollouts").json() == []
        assert op.get("/models/v2").json()["status"] == "candidate"  # untouched: it can be rolled out once fixed

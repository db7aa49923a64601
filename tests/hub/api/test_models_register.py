"""Every version passes the gate (issue 11, #6), over HTTP: ``POST /models`` registers and gates a model made
elsewhere, ``skip_gate`` is audited, and a rollout refuses a candidate without a passed or skipped gate.
Also the HTTP face of revert and retry (#7): 409 when there is nothing to revert or retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hub.api.conftest import Hub, online
from tests.hub.rollout.test_service import variant

DEVICES = [f"pump-{i}" for i in range(1, 6)]


@pytest.fixture
def fleet(hub: Hub, initial_model_dir: Path) -> Hub:
    registry = hub.services.registry
    assert registry is not None
    registry.register(initial_model_dir, actor="operator:ana", reason="bootstrap", status="active")
    hub.ingest(*(online(d) for d in DEVICES))
    return hub


def test_a_registered_model_cannot_be_rolled_out_before_its_gate(fleet: Hub, initial_model_dir: Path,
                                                                  tmp_path: Path) -> None:
    op = fleet.client("operator")
    registry = fleet.services.registry
    assert registry is not None
    registry.register(variant(initial_model_dir, tmp_path / "v2", "v2"), actor="cli:ana", reason="by hand")
    refused = op.post("/rollouts", json={"candidate": "v2", "reason": "try"})  # what `models --register` allowed
    assert refused.status_code == 409 and "no gate decision" in refused.json()["detail"], refused.text

    made = op.post("/models", json={"path": str(variant(initial_model_dir, tmp_path / "v3", "v3")),
                                    "reason": "a model from the lab"})
    assert made.status_code == 201, made.text
    body = made.json()
    # no labels yet: the gate cannot judge it, and says so in its own status
    assert (body["version"], body["status"], body["gate_verdict"]) == ("v3", "insufficient_data", "insufficient_data")
    assert body["gate"]["verdict"] == "insufficient_data" and body["gate"]["split"]["method"] == "frozen_slice"
    assert any("min_positives" in d for d in body["gate"]["deciding"])
    assert op.post("/rollouts", json={"candidate": "v3", "reason": "try"}).status_code == 409
    audit = [(a["action"], a["to_status"]) for a in fleet.client("viewer").get("/models/v3").json()["audit"]]
    assert audit == [("registered", "candidate"), ("gate", "insufficient_data")]
    again = op.post("/models", json={"path": str(tmp_path / "v3"), "reason": "twice"})
    assert again.status_code == 409 and "already registered" in again.json()["detail"]
    assert op.post("/models", json={"path": str(tmp_path / "nope"), "reason": "x"}).status_code == 400


def test_skip_gate_is_audited_and_clears_the_candidate_for_rollout(fleet: Hub, initial_model_dir: Path,
                                                                   tmp_path: Path) -> None:
    op, viewer = fleet.client("operator"), fleet.client("viewer")
    path = str(variant(initial_model_dir, tmp_path / "v2", "v2"))
    assert viewer.post("/models", json={"path": path, "reason": "x", "skip_gate": True}).status_code == 403
    made = op.post("/models", json={"path": path, "reason": "hotfix tested on the bench", "skip_gate": True,
                                    "actor": "ana"})
    assert made.status_code == 201, made.text
    assert (made.json()["status"], made.json()["gate"]["verdict"]) == ("candidate", "skipped")
    detail = viewer.get("/models/v2").json()
    assert detail["gate"]["verdict"] == "skipped" and detail["gate"]["actor"] == "operator:ana"
    assert detail["gate"]["reason"] == "hotfix tested on the bench" and detail["gate"]["incumbent_version"] == "v1"
    skipped = detail["audit"][-1]
    assert (skipped["action"], skipped["actor"], skipped["reason"]) == (
        "gate_skipped", "operator:ana", "hotfix tested on the bench")
    started = op.post("/rollouts", json={"candidate": "v2", "reason": "hotfix"})
    assert started.status_code == 201, started.text


def test_revert_and_retry_refuse_with_409_when_there_is_nothing_to_do(fleet: Hub, initial_model_dir: Path,
                                                                       tmp_path: Path) -> None:
    op = fleet.client("operator")
    nothing = op.post("/rollouts/revert", json={"reason": "back"})
    assert nothing.status_code == 409 and "nothing to revert" in nothing.json()["detail"]
    assert op.post("/rollouts/ro-missing/retry", json={"reason": "again"}).status_code == 404
    op.post("/models", json={"path": str(variant(initial_model_dir, tmp_path / "v2", "v2")), "reason": "r",
                             "skip_gate": True})
    rid = op.post("/rollouts", json={"candidate": "v2", "reason": "try"}).json()["id"]
    assert op.post(f"/rollouts/{rid}/retry", json={"reason": "again"}).status_code == 409  # still running
    running = op.post("/rollouts/revert", json={"reason": "back"})
    assert running.status_code == 409 and "is running" in running.json()["detail"]
    assert op.post(f"/rollouts/{rid}/rollback", json={"reason": "operator"}).status_code == 200
    refused = op.post(f"/rollouts/{rid}/retry", json={"reason": "again"})
    assert refused.status_code == 409 and "not an infrastructure failure" in refused.json()["detail"]
    assert fleet.client("viewer").post("/rollouts/revert", json={"reason": "x"}).status_code == 403


def test_a_version_the_gate_could_not_judge_can_be_cleared_by_an_operator_with_a_reason(
        fleet: Hub, initial_model_dir: Path, tmp_path: Path) -> None:
    """``insufficient_data`` (too few labels, say a version with regimes learned from the field before any came back)
    is not "found worse": an operator may clear it, audited; a rejected one may not be cleared."""
    op, viewer = fleet.client("operator"), fleet.client("viewer")
    made = op.post("/models", json={"path": str(variant(initial_model_dir, tmp_path / "v2", "v2")),
                                    "reason": "regimes learned from the field"})
    assert made.json()["status"] == "insufficient_data", made.text
    assert viewer.post("/models/v2/skip-gate", json={"reason": "x"}).status_code == 403
    assert op.post("/models/v2/skip-gate", json={}).status_code == 422  # the reason is required
    assert op.post("/models/v9/skip-gate", json={"reason": "x"}).status_code == 404
    cleared = op.post("/models/v2/skip-gate", json={"reason": "regimes checked by hand; canary watches",
                                                   "actor": "ana"})
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["status"], cleared.json()["gate_verdict"]) == ("candidate", "skipped")
    audit = viewer.get("/models/v2").json()["audit"]
    assert (audit[-1]["action"], audit[-1]["actor"], audit[-1]["to_status"]) == ("gate_skipped", "operator:ana",
                                                                                 "candidate")
    assert "regimes checked by hand" in audit[-1]["reason"]
    started = op.post("/rollouts", json={"candidate": "v2", "reason": "canary first"})
    assert started.status_code == 201, started.text
    registry = fleet.services.registry
    assert registry is not None
    registry.register(variant(initial_model_dir, tmp_path / "v3", "v3"), actor="test", reason="worse",
                      status="rejected")
    refused = op.post("/models/v3/skip-gate", json={"reason": "try"})
    assert refused.status_code == 409 and "v3 is rejected" in refused.json()["detail"]

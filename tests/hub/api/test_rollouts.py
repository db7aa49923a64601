"""``POST /rollouts`` with per-rollout health limits: merged over the hub's, stored with the plan, shown by GET;
limits that are invalid, alone or once merged, are refused with 422 and a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.rollout import HealthLimits
from hub.rollout.service import RolloutService
from tests.hub.api.conftest import Hub, online
from tests.hub.rollout.factories import active_and_candidate

DEVICES = [f"pump-{i}" for i in range(1, 6)]


@pytest.fixture
def rollouts(hub: Hub, initial_model_dir: Path, tmp_path: Path) -> RolloutService:
    service = hub.services.rollouts
    assert service is not None
    active_and_candidate(service.registry, initial_model_dir, tmp_path)
    hub.ingest(*(online(d) for d in DEVICES))
    return service


def test_limits_override_is_stored_and_returned(hub: Hub, rollouts: RolloutService) -> None:
    op, viewer = hub.client("operator"), hub.client("viewer")
    body = {"candidate": "v2", "reason": "drift at site-a", "limits": {"rollback_anomaly_factor": 12,
                                                                        "min_rate_windows": 200}}
    created = op.post("/rollouts", json=body)
    assert created.status_code == 201, created.text
    expected = HealthLimits(rollback_anomaly_factor=12.0, min_rate_windows=200).to_dict()
    assert created.json()["limits"] == expected
    rid = created.json()["id"]
    shown = viewer.get(f"/rollouts/{rid}").json()
    assert shown["limits"] == expected and shown["plan"]["limits"] == expected
    assert rollouts.get(rid).plan.limits == HealthLimits(rollback_anomaly_factor=12.0, min_rate_windows=200)
    assert shown["plan"]["expectation"]["score_hist"]  # the candidate's own yardstick, from its manifest
    assert [r["limits"] for r in viewer.get("/rollouts").json()] == [expected]


def test_without_override_the_hub_limits_apply(hub: Hub, rollouts: RolloutService) -> None:
    rollouts.limits = HealthLimits(max_score_psi=0.9)  # as HubSettings.rollout_limits would set them
    created = hub.client("operator").post("/rollouts", json={"candidate": "v2", "reason": "drift"})
    assert created.status_code == 201, created.text
    assert created.json()["limits"] == HealthLimits(max_score_psi=0.9).to_dict()


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"anomaly_rate_factor": 8}, "anomaly_rate_factor (8) must not exceed rollback_anomaly_factor (5)"),
        ({"max_score_psi": -1}, "Input should be greater than or equal to 0"),
        ({"min_rate_windows": 2.5}, "Input should be a valid integer"),
        ({"colour": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_limits_are_422_with_a_message(
    hub: Hub, rollouts: RolloutService, limits: dict[str, float], message: str
) -> None:
    bad = hub.client("operator").post("/rollouts", json={"candidate": "v2", "reason": "drift", "limits": limits})
    assert bad.status_code == 422, bad.text
    [problem] = bad.json()["detail"]
    assert problem["loc"][:2] == ["body", "limits"] and message in problem["msg"]
    assert rollouts.running() is None and rollouts.registry.get("v2").status == "candidate"

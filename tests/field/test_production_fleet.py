"""The field harness itself: a production-mode hub and agents exchange data, and dev-mode shortcuts are absent."""

from __future__ import annotations

import pytest

from tests.field.harness import FieldFleet

pytestmark = pytest.mark.slow


def test_a_production_fleet_stores_what_its_agents_send(field_fleet: FieldFleet) -> None:
    field_fleet.start_hub()
    field_fleet.start_agent("dev-0")
    with field_fleet.api("viewer") as viewer:
        field_fleet.wait(lambda: any(d["device_id"] == "dev-0" and d["online"] for d in viewer.get("/devices").json()),
                         "dev-0 to come online at the hub")
        assert viewer.get("/models/v1").json()["status"] == "active"
        assert viewer.post("/retrain", json={"reason": "x"}).status_code == 403  # a viewer cannot retrain
    store = field_fleet.store()
    try:
        field_fleet.wait(lambda: store.counts().stats > 0, "stats from dev-0")
    finally:
        store.close()
    assert field_fleet.hub_cli("devices", check=False).returncode == 0
    unauthenticated = field_fleet.api("viewer")
    unauthenticated.headers.pop("Authorization")
    with unauthenticated:
        assert unauthenticated.get("/devices").status_code == 401

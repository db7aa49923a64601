"""``/health`` tells the truth about the broker (issue 11, item 8): it said ok while the hub could not reach it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.field.harness import FieldFleet

pytestmark = pytest.mark.slow


def health(fleet: FieldFleet) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{fleet.url}/health", timeout=5)
    return response.status_code, response.json()


def mqtt_connected(fleet: FieldFleet) -> dict[str, float]:
    text = httpx.get(f"{fleet.url}/metrics", timeout=5).text
    return {s.labels["client"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "fleetloop_hub_mqtt_connected"}


def test_health_names_a_lost_broker_and_recovers_with_it(field_fleet: FieldFleet) -> None:
    field_fleet.start_hub()
    field_fleet.wait(lambda: health(field_fleet)[1]["status"] == "ok", "/health ok with the broker up")
    code, body = health(field_fleet)
    assert code == 200 and body["problems"] == []
    assert body["broker"]["ingest"]["connected"] is True and body["broker"]["commands"]["connected"] is True
    assert body["store"]["status"] == "ok" and "drift" in body["jobs"] and "rollouts" in body["jobs"]
    assert mqtt_connected(field_fleet) == {"ingest": 1.0, "commands": 1.0}

    field_fleet.broker.stop()
    field_fleet.wait(lambda: health(field_fleet)[1]["status"] != "ok", "/health to notice the broker is gone")
    code, body = health(field_fleet)
    assert code == 200 and body["status"] == "degraded"  # before: "ok" (and no "broker" at all)
    assert {"broker_disconnected:ingest", "broker_disconnected:commands"} <= set(body["problems"])
    assert body["broker"]["status"] == "disconnected" and body["broker"]["ingest"]["connected"] is False
    assert body["broker"]["ingest"]["last_error"]
    assert mqtt_connected(field_fleet) == {"ingest": 0.0, "commands": 0.0}

    field_fleet.broker.start()  # paho reconnects on its own
    field_fleet.wait(lambda: health(field_fleet)[1]["status"] == "ok", "/health ok again with the broker back", 90)
    assert mqtt_connected(field_fleet) == {"ingest": 1.0, "commands": 1.0}

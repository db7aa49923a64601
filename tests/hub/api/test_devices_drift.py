"""``/devices`` (registry and presence) and ``/drift`` (stored reports, newest first, by scope)."""

from __future__ import annotations

from tests.hub.api.conftest import T0, Hub, anomaly, online


def test_devices_list_and_get(hub: Hub) -> None:
    hub.ingest(online("pump-1", site="site-a"), online("pump-2", site="site-b"), anomaly("pump-3"))
    viewer = hub.client("viewer")
    devices = viewer.get("/devices").json()
    assert [(d["device_id"], d["online"], d["cohort"]) for d in devices] == [
        ("pump-1", True, "site-a"), ("pump-2", True, "site-b"), ("pump-3", False, None),
    ]
    one = viewer.get("/devices/pump-1").json()
    assert one["model_version"] == "v1" and one["site"] == "site-a" and one["status_ts"] == T0
    missing = viewer.get("/devices/ghost")
    assert missing.status_code == 404 and missing.json() == {"detail": "device ghost is not known to the hub"}


def test_drift_reports_newest_first_and_by_scope(hub: Hub) -> None:
    first = hub.store.save_drift_report({"scope": "fleet", "verdict": "no_drift"}, "fleet", "no_drift", T0)
    second = hub.store.save_drift_report({"scope": "cohort:a", "verdict": "drift"}, "cohort:a", "drift", T0 + 1)
    third = hub.store.save_drift_report({"scope": "fleet", "verdict": "drift"}, "fleet", "drift", T0 + 2)
    viewer = hub.client("viewer")
    assert [r["id"] for r in viewer.get("/drift").json()] == [third, second, first]
    fleet = viewer.get("/drift", params={"scope": "fleet", "limit": 1}).json()
    assert fleet == [{"id": third, "ts": T0 + 2, "scope": "fleet", "verdict": "drift",
                      "report": {"scope": "fleet", "verdict": "drift"}}]

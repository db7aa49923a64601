"""``/incidents`` on the real app and a real SQLite file: list, filter, page, show, acknowledge, resolve (one and a
batch), report a missed failure; roles and bad input."""

from __future__ import annotations

from tests.hub.api.conftest import T0, Hub, anomaly, online


def _incidents(hub: Hub, devices: dict[str, str]) -> dict[str, str]:
    """One open incident per device (site given), built by the hub's pass; device → incident id."""
    for n, (device, site) in enumerate(devices.items()):
        hub.ingest(online(device, site=site), *[anomaly(device, ts=T0 + 100 * n + i) for i in range(3)])
    assert hub.services.incidents is not None
    hub.services.incidents.run(hub.clock.now)
    rows = hub.client("viewer").get("/incidents").json()
    return {r["device_id"]: r["id"] for r in rows}


def test_viewers_list_filter_page_and_show_incidents(hub: Hub) -> None:
    ids = _incidents(hub, {"pump-1": "plant-a", "pump-2": "plant-b", "pump-3": "plant-a"})
    viewer = hub.client("viewer")
    listed = viewer.get("/incidents").json()
    assert [r["device_id"] for r in listed] == ["pump-3", "pump-2", "pump-1"]  # newest first
    assert {r["state"] for r in listed} == {"open"} and {r["windows"] for r in listed} == {3}
    assert [r["device_id"] for r in viewer.get("/incidents", params={"site": "plant-a"}).json()] == ["pump-3", "pump-1"]
    assert [r["device_id"] for r in viewer.get("/incidents", params={"device_id": "pump-2"}).json()] == ["pump-2"]
    assert [r["device_id"] for r in viewer.get("/incidents", params={"since": T0 + 150}).json()] == ["pump-3"]
    assert viewer.get("/incidents", params={"state": "resolved"}).json() == []
    pages = [viewer.get("/incidents", params={"limit": 2, "offset": o}).json() for o in (0, 2)]
    assert [r["device_id"] for page in pages for r in page] == ["pump-3", "pump-2", "pump-1"]
    detail = viewer.get(f"/incidents/{ids['pump-1']}").json()
    assert len(detail["window_traces"]) == 3 and [e["kind"] for e in detail["events"]] == ["opened"]
    missing = viewer.get("/incidents/nope")
    assert missing.status_code == 404 and "no incident nope" in missing.json()["detail"]


def test_technicians_acknowledge_and_resolve_and_the_verdict_labels_the_traces(hub: Hub) -> None:
    ids = _incidents(hub, {"pump-1": "plant-a"})
    tech = hub.client("technician")
    acked = tech.post(f"/incidents/{ids['pump-1']}/acknowledge", json={"technician_id": "alice"})
    assert acked.status_code == 200 and (acked.json()["state"], acked.json()["acknowledged_by"]) == (
        "acknowledged", "alice")
    again = tech.post(f"/incidents/{ids['pump-1']}/acknowledge", json={"technician_id": "bob"})
    assert again.status_code == 409 and "acknowledged by alice" in again.json()["detail"]
    done = tech.post(f"/incidents/{ids['pump-1']}/resolve", json={
        "technician_id": "alice", "verdict": "confirmed_fault", "fault_type": "bearing", "note": "outer race"})
    assert done.status_code == 200 and (done.json()["state"], done.json()["verdict"]) == ("resolved", "confirmed_fault")
    traces = {w["trace_id"] for w in tech.get(f"/incidents/{ids['pump-1']}").json()["window_traces"]}
    labels = tech.get("/annotations", params={"device_id": "pump-1"}).json()
    assert {a["trace_id"] for a in labels} == traces
    assert {(a["status"], a["technician_id"], a["label"], a["fault_type"]) for a in labels} == {
        ("joined", "alice", "fault", "bearing")}


def test_a_batch_resolve_reports_each_incident_and_a_missed_failure_is_reported(hub: Hub) -> None:
    ids = _incidents(hub, {"pump-1": "plant-a", "pump-2": "plant-a"})
    tech = hub.client("technician")
    batch = tech.post("/incidents/resolve", json={"technician_id": "bob", "verdict": "false_alarm",
                                                  "incident_ids": [ids["pump-1"], ids["pump-2"], "ghost"]})
    assert batch.status_code == 200
    assert [(b["incident_id"], b["status"]) for b in batch.json()] == [(ids["pump-1"], 200), (ids["pump-2"], 200),
                                                                        ("ghost", 404)]
    assert {a["label"] for a in tech.get("/annotations").json()} == {"no_fault"}
    missed = tech.post("/incidents/missed", json={"device_id": "pump-1", "start_ts": T0 + 1000, "end_ts": T0 + 2000,
                                                  "fault_type": "seal", "technician_id": "bob"})
    assert missed.status_code == 201 and (missed.json()["kind"], missed.json()["state"]) == ("missed_failure",
                                                                                              "resolved")
    covered = tech.post("/incidents/missed", json={"device_id": "pump-1", "start_ts": T0, "end_ts": T0 + 5,
                                                   "fault_type": "seal", "technician_id": "bob"})
    assert covered.status_code == 409 and "resolve their incident" in covered.json()["detail"]


def test_a_viewer_cannot_act_and_bad_input_gets_a_reason(hub: Hub) -> None:
    ids = _incidents(hub, {"pump-1": "plant-a"})
    viewer = hub.client("viewer")
    for path, body in ((f"/incidents/{ids['pump-1']}/resolve", {"technician_id": "v", "verdict": "false_alarm"}),
                       (f"/incidents/{ids['pump-1']}/acknowledge", {"technician_id": "v"}),
                       ("/incidents/resolve", {"technician_id": "v", "verdict": "false_alarm", "incident_ids": ["x"]}),
                       ("/incidents/missed", {"device_id": "pump-1", "start_ts": 1, "end_ts": 2, "fault_type": "x",
                                              "technician_id": "v"})):
        refused = viewer.post(path, json=body)
        assert refused.status_code == 403 and "technician or operator" in refused.json()["detail"], path
    assert viewer.get(f"/incidents/{ids['pump-1']}").json()["state"] == "open"
    tech = hub.client("technician")
    no_type = tech.post(f"/incidents/{ids['pump-1']}/resolve",
                        json={"technician_id": "a", "verdict": "confirmed_fault"})
    assert no_type.status_code == 422 and "fault_type" in str(no_type.json()["detail"])
    unknown = tech.post(f"/incidents/{ids['pump-1']}/resolve", json={"technician_id": "a", "verdict": "works_now"})
    assert unknown.status_code == 422
    backwards = tech.post("/incidents/missed", json={"device_id": "pump-1", "start_ts": 2, "end_ts": 1,
                                                     "fault_type": "x", "technician_id": "a"})
    assert backwards.status_code == 422 and "end_ts is before start_ts" in str(backwards.json()["detail"])
    assert tech.get("/incidents", params={"state": "sleeping"}).status_code == 422
    assert tech.get("/incidents", params={"offset": -1}).status_code == 422


def test_the_queue_pages_with_offset(hub: Hub) -> None:
    hub.ingest(online("pump-1"), *[anomaly("pump-1", ts=T0 + i, score=0.6 + i / 100) for i in range(7)])
    tech = hub.client("technician")
    whole = [q["trace_id"] for q in tech.get("/queue", params={"limit": 7}).json()]
    pages = [tech.get("/queue", params={"limit": 3, "offset": o}).json() for o in (0, 3, 6)]
    assert [q["trace_id"] for page in pages for q in page] == whole and len(whole) == 7
    assert tech.get("/queue", params={"offset": -1}).status_code == 422

"""Technician annotations over HTTP: stored like MQTT annotations, listed, looked up by trace, pending until joined."""

from __future__ import annotations

import httpx

from hub.store.rows import IngestRecord
from shared.messages import Annotation, Anomaly, Sample
from tests.hub.api.conftest import T0, Hub, anomaly, online, sample


def test_annotate_a_known_trace_then_list_get_and_look_it_up(hub: Hub) -> None:
    a = anomaly(score=0.93)
    hub.ingest(online(), a)
    tech = hub.client("technician")
    created = tech.post("/annotations", json={
        "trace_id": a.trace_id, "label": "fault", "fault_type": "bearing", "technician_id": "tech-7",
        "confidence": 0.9, "note": "grinding noise",
    })
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "joined"
    assert body["device_id"] == "pump-1"  # from the prediction
    assert body["model_version"] == "v1"
    assert body["ts"] == hub.clock.now and body["signal"] == "confirmed"

    # Stored through ingest_batch, in the one annotations table MQTT annotations use.
    (row,) = hub.store.annotations(trace_id=a.trace_id)
    assert row.annotation_id == body["annotation_id"] and row.label == "fault" and row.fault_type == "bearing"

    viewer = hub.client("viewer")
    listed = viewer.get("/annotations", params={"device_id": "pump-1"}).json()
    assert [x["annotation_id"] for x in listed] == [body["annotation_id"]]
    assert viewer.get("/annotations", params={"trace_id": "nope"}).json() == []
    assert viewer.get("/annotations", params={"since": hub.clock.now + 1}).json() == []
    got = viewer.get(f"/annotations/{body['annotation_id']}")
    assert got.status_code == 200 and got.json() == body
    missing = viewer.get("/annotations/does-not-exist")
    assert missing.status_code == 404 and missing.json()["detail"] == "no annotation does-not-exist"

    trace = viewer.get(f"/traces/{a.trace_id}").json()
    assert trace["prediction"]["score"] == 0.93
    assert trace["prediction"]["features"] == [0.5, 1.5, -2.0]
    assert trace["prediction"]["device_id"] == "pump-1" and trace["prediction"]["model_version"] == "v1"
    assert [x["annotation_id"] for x in trace["annotations"]] == [body["annotation_id"]]
    assert trace["outcome"] is None  # no label set yet

    hub.client("operator").post("/labels/validate").raise_for_status()
    outcome = viewer.get(f"/traces/{a.trace_id}").json()["outcome"]
    assert outcome["label"]["label"] == 1 and outcome["label"]["n_annotations"] == 1
    assert outcome["exclusions"] == []


def test_mqtt_and_api_annotations_land_in_one_place(hub: Hub) -> None:
    a = anomaly()
    hub.ingest(online(), a)
    mqtt = Annotation(device_id="pump-1", ts=T0 + 5, trace_id=a.trace_id, label="fault", technician_id="tech-1")
    hub.store.ingest_batch([IngestRecord(mqtt, T0 + 6)])
    hub.client("technician").post(
        "/annotations", json={"trace_id": a.trace_id, "label": "fault", "technician_id": "tech-2"}
    ).raise_for_status()
    trace = hub.client("viewer").get(f"/traces/{a.trace_id}").json()
    assert sorted(x["technician_id"] for x in trace["annotations"]) == ["tech-1", "tech-2"]


def test_unknown_trace_is_pending_until_its_prediction_arrives(hub: Hub) -> None:
    hub.ingest(online())
    tech, operator = hub.client("technician"), hub.client("operator")
    trace_id = "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"
    no_device = tech.post("/annotations", json={"trace_id": trace_id, "label": "fault", "technician_id": "t"})
    assert no_device.status_code == 400
    assert "give the device_id" in no_device.json()["detail"]
    unknown_device = tech.post(
        "/annotations", json={"trace_id": trace_id, "device_id": "ghost", "label": "fault", "technician_id": "t"}
    )
    assert unknown_device.status_code == 404
    assert unknown_device.json()["detail"] == "device ghost is not known to the hub"

    created = tech.post(
        "/annotations", json={"trace_id": trace_id, "device_id": "pump-1", "label": "fault", "technician_id": "t"}
    )
    assert created.status_code == 201 and created.json()["status"] == "pending"
    pending = tech.get("/labels/pending").json()
    assert pending == [{
        "trace_id": trace_id, "device_id": "pump-1", "n_annotations": 1, "first_annotated": hub.clock.now,
        "last_annotated": hub.clock.now, "device_known": True, "device_online": True,
    }]
    trace = tech.get(f"/traces/{trace_id}").json()
    assert trace["prediction"] is None and trace["annotations"][0]["status"] == "pending"

    first = operator.post("/labels/validate").json()
    assert first["n_items"] == 0 and first["n_pending"] == 1 and first["missing_trace_ids"] == 1

    hub.ingest(anomaly(trace_id=trace_id, ts=T0 + 100))  # the device uploads it
    assert tech.get("/labels/pending").json() == []
    assert tech.get(f"/annotations/{created.json()['annotation_id']}").json()["status"] == "joined"
    second = operator.post("/labels/validate")
    assert second.status_code == 201
    assert second.json()["n_items"] == 1 and second.json()["n_pending"] == 0
    detail = tech.get(f"/labels/sets/{second.json()['id']}").json()
    assert [(i["trace_id"], i["label"]) for i in detail["items"]] == [(trace_id, 1)]


def test_range_annotation_labels_every_prediction_it_covers(hub: Hub) -> None:
    inside: list[Anomaly | Sample] = [sample(ts=T0 + 10, reason="random"), anomaly(ts=T0 + 20)]
    outside = sample(ts=T0 + 40)
    other_device = anomaly(device="pump-2", ts=T0 + 15)
    hub.ingest(online(), online("pump-2"), *inside, outside, other_device)
    tech = hub.client("technician")
    created = tech.post("/annotations", json={
        "device_id": "pump-1", "start_ts": T0 + 10, "end_ts": T0 + 20, "label": "no_fault", "technician_id": "t",
        "signal": "correction",
    })
    assert created.status_code == 201 and created.json()["status"] == "joined"
    assert created.json()["trace_id"] is None

    trace = tech.get(f"/traces/{inside[0].trace_id}").json()
    assert [a["annotation_id"] for a in trace["annotations"]] == [created.json()["annotation_id"]]
    assert tech.get(f"/traces/{outside.trace_id}").json()["annotations"] == []

    result = hub.client("operator").post("/labels/validate").json()
    items = hub.client("viewer").get(f"/labels/sets/{result['id']}").json()["items"]
    assert sorted(i["trace_id"] for i in items) == sorted(p.trace_id for p in inside)
    assert {i["label"] for i in items} == {0}

    empty = tech.post("/annotations", json={
        "device_id": "pump-1", "start_ts": T0 + 1000, "end_ts": T0 + 2000, "label": "fault", "technician_id": "t",
    })
    assert empty.status_code == 201 and empty.json()["status"] == "pending"


def test_semantic_and_validation_errors(hub: Hub) -> None:
    a = anomaly()
    hub.ingest(online(), online("pump-2"), a)
    tech = hub.client("technician")

    def post(**body: object) -> httpx.Response:
        return tech.post("/annotations", json={"label": "fault", "technician_id": "t", **body})

    wrong_device = post(trace_id=a.trace_id, device_id="pump-2")
    assert wrong_device.status_code == 400
    assert wrong_device.json()["detail"] == f"trace {a.trace_id} belongs to device pump-1, not pump-2"
    unknown_range_device = post(device_id="ghost", start_ts=T0, end_ts=T0 + 1)
    assert unknown_range_device.status_code == 404
    assert unknown_range_device.json()["detail"] == "device ghost is not known to the hub"

    cases: list[tuple[dict[str, object], str]] = [
        ({}, "needs a trace_id"),
        ({"start_ts": T0, "end_ts": T0 + 1}, "needs a device_id"),
        ({"device_id": "pump-1", "start_ts": T0 + 1, "end_ts": T0}, "end_ts is before start_ts"),
        ({"trace_id": a.trace_id, "start_ts": T0, "end_ts": T0 + 1}, "not both"),
        ({"trace_id": a.trace_id, "confidence": 1.5}, "less than or equal to 1"),
        ({"trace_id": a.trace_id, "surprise": 1}, "Extra inputs are not permitted"),
        ({"trace_id": a.trace_id, "signal": "gut_feeling"}, "Input should be"),
    ]
    for body, message in cases:
        response = post(**body)
        assert response.status_code == 422, body
        assert message in str(response.json()["detail"]), (body, response.json())
    assert hub.store.annotations() == []


def test_client_chosen_annotation_id_makes_retries_safe(hub: Hub) -> None:
    a = anomaly()
    hub.ingest(online(), a)
    tech = hub.client("technician")
    body = {"trace_id": a.trace_id, "label": "fault", "technician_id": "t", "annotation_id": "retry-1"}
    first = tech.post("/annotations", json=body)
    hub.clock.now += 60
    again = tech.post("/annotations", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    changed = tech.post("/annotations", json={**body, "label": "no_fault"})
    assert changed.status_code == 409 and "choose a new annotation_id" in changed.json()["detail"]
    assert len(hub.store.annotations()) == 1


def test_trace_of_nothing_is_404(hub: Hub) -> None:
    response = hub.client("viewer").get("/traces/unknown")
    assert response.status_code == 404
    assert response.json()["detail"] == "no prediction or annotation of trace unknown"


def test_a_batch_is_checked_item_by_item_and_stored_whole_or_not_at_all(hub: Hub) -> None:
    known, other = anomaly(), anomaly(device="pump-2")
    hub.ingest(online(), online("pump-2"), known, other)
    tech = hub.client("technician")
    items = [{"trace_id": known.trace_id, "label": "fault", "technician_id": "t", "annotation_id": "b-1"},
             {"trace_id": "not-yet-seen", "device_id": "pump-2", "label": "no_fault", "technician_id": "t",
              "annotation_id": "b-2"},
             {"device_id": "pump-1", "start_ts": T0, "end_ts": T0 + 5, "label": "no_fault", "technician_id": "t"}]
    made = tech.post("/annotations/batch", json={"annotations": items})
    assert made.status_code == 201 and made.json() == {"stored": 3, "unchanged": 0}
    assert {a.annotation_id for a in hub.store.annotations()} >= {"b-1", "b-2"} and len(hub.store.annotations()) == 3
    assert tech.get("/annotations/b-2").json()["status"] == "pending"
    assert tech.post("/annotations/batch", json={"annotations": items[:2]}).json() == {"stored": 0, "unchanged": 2}

    bad = [{"trace_id": other.trace_id, "label": "fault", "technician_id": "t", "annotation_id": "b-3"},
           {"trace_id": known.trace_id, "device_id": "pump-2", "label": "fault", "technician_id": "t"}]
    refused = tech.post("/annotations/batch", json={"annotations": bad})
    assert refused.status_code == 400 and refused.json()["detail"].startswith("annotations[1]: trace ")
    changed = tech.post("/annotations/batch", json={"annotations": [{**items[0], "label": "no_fault"}]})
    assert changed.status_code == 409 and "annotations[0]" in changed.json()["detail"]
    assert len(hub.store.annotations()) == 3  # nothing of a refused batch is stored
    assert tech.post("/annotations/batch", json={"annotations": []}).status_code == 422
    assert hub.client("viewer").post("/annotations/batch", json={"annotations": items}).status_code == 403

"""Label sets over HTTP: every exclusion has a reason, the id is stable, conflicts show their votes."""

from __future__ import annotations

import httpx

from tests.hub.api.conftest import T0, Hub, anomaly, online


def annotate(client: httpx.Client, trace_id: str, label: str, technician: str, signal: str = "confirmed") -> str:
    response = client.post(
        "/annotations", json={"trace_id": trace_id, "label": label, "technician_id": technician, "signal": signal}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["annotation_id"])


def test_duplicates_and_untrainable_signals_are_excluded_with_reasons(hub: Hub) -> None:
    a, b = anomaly(ts=T0), anomaly(ts=T0 + 1)
    hub.ingest(online(), a, b)
    tech = hub.client("technician")
    kept = annotate(tech, a.trace_id, "fault", "ann")
    hub.clock.now += 1
    dup = annotate(tech, a.trace_id, "fault", "ann")
    thumbs = annotate(tech, a.trace_id, "no_fault", "bob", signal="thumbs")
    implicit = annotate(tech, b.trace_id, "fault", "bob", signal="implicit")

    result = hub.client("operator").post("/labels/validate")
    assert result.status_code == 201
    summary = result.json()
    assert summary["created"] is True
    assert summary["n_items"] == 1 and summary["n_annotations"] == 4
    assert summary["excluded"] == {"duplicate": 1, "stale": 0, "unreliable_annotator": 0, "untrainable_signal": 2,
                                   "conflict_no_consensus": 0, "device_mismatch": 0,
                                   "device_cap": 0}
    assert summary["reported_untrainable"] == {"fault": 1, "no_fault": 1}
    assert summary["id"] == "ls-" + summary["fingerprint"][:16]

    detail = hub.client("viewer").get(f"/labels/sets/{summary['id']}").json()
    reasons = {e["annotation_id"]: (e["reason"], e["detail"]) for e in detail["exclusions"]}
    assert reasons[dup] == ("duplicate", f"ann already labelled {a.trace_id} fault in {kept}")
    assert reasons[thumbs][0] == reasons[implicit][0] == "untrainable_signal"
    assert "never trained on" in reasons[thumbs][1]
    assert [(i["trace_id"], i["label"], i["weight"]) for i in detail["items"]] == [(a.trace_id, 1, 1.0)]

    outcome = hub.client("viewer").get(f"/traces/{a.trace_id}").json()["outcome"]
    assert {e["annotation_id"] for e in outcome["exclusions"]} == {dup, thumbs}


def test_label_set_id_and_fingerprint_are_stable(hub: Hub) -> None:
    a = anomaly()
    hub.ingest(online(), a)
    annotate(hub.client("technician"), a.trace_id, "fault", "ann")
    operator = hub.client("operator")
    first = operator.post("/labels/validate")
    hub.clock.now += 3600
    second = operator.post("/labels/validate")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["created"] is False
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["fingerprint"] == first.json()["fingerprint"]
    assert second.json()["created_ts"] == first.json()["created_ts"]
    assert second.json()["validated_ts"] == first.json()["validated_ts"] + 3600

    sets = operator.get("/labels/sets").json()
    assert [s["id"] for s in sets] == [first.json()["id"]]
    annotate(hub.client("technician"), a.trace_id, "fault", "bob")
    third = operator.post("/labels/validate").json()
    assert third["id"] == first.json()["id"]  # a second agreeing vote leaves label and weight unchanged
    assert operator.get("/labels/sets/ls-0000000000000000").status_code == 404


def test_a_new_label_gives_a_new_label_set(hub: Hub) -> None:
    a, b = anomaly(), anomaly(ts=T0 + 5)
    hub.ingest(online(), a, b)
    tech, operator = hub.client("technician"), hub.client("operator")
    annotate(tech, a.trace_id, "fault", "ann")
    first = operator.post("/labels/validate").json()
    annotate(tech, b.trace_id, "no_fault", "ann")
    hub.clock.now += 1
    second = operator.post("/labels/validate").json()
    assert second["id"] != first["id"] and second["n_items"] == 2
    assert [s["id"] for s in operator.get("/labels/sets").json()] == [second["id"], first["id"]]


def test_conflicts_list_their_votes(hub: Hub) -> None:
    a, b = anomaly(), anomaly(ts=T0 + 5)
    hub.ingest(online(), a, b)
    tech = hub.client("technician")
    yes = annotate(tech, a.trace_id, "fault", "ann")
    no = annotate(tech, a.trace_id, "no_fault", "bob")
    annotate(tech, b.trace_id, "fault", "ann")
    (conflict,) = hub.client("viewer").get("/labels/conflicts").json()
    assert conflict["trace_id"] == a.trace_id and conflict["device_id"] == "pump-1"
    assert conflict["weight_fault"] == conflict["weight_no_fault"] == 1.0 and conflict["confidence"] == 0.5
    assert sorted((v["annotation_id"], v["label"]) for v in conflict["votes"]) == sorted(
        [(yes, "fault"), (no, "no_fault")]
    )
    summary = hub.client("operator").post("/labels/validate").json()
    assert summary["n_conflicts"] == 1 and summary["excluded"]["conflict_no_consensus"] == 2
    assert [c["trace_id"] for c in summary["conflicts"]] == [a.trace_id]
    assert summary["n_items"] == 1


def test_pending_annotations_become_stale_after_the_ttl(hub: Hub) -> None:
    hub.ingest(online())
    tech = hub.client("technician")
    body = {"trace_id": "never-arrives", "device_id": "pump-1", "label": "fault", "technician_id": "t"}
    response = tech.post("/annotations", json=body)
    assert response.status_code == 201
    hub.clock.now += 91 * 86400  # default ttl: 90 days
    assert tech.get("/labels/pending").json() == []
    summary = hub.client("operator").post("/labels/validate").json()
    assert summary["n_pending"] == 0 and summary["excluded"]["stale"] == 1

"""The labeling queue: unannotated anomalies by score, then low-confidence samples by margin, then random ones."""

from __future__ import annotations

import doctest
from pathlib import Path

import hub.labels.service
from tests.hub.api.conftest import T0, Hub, anomaly, online, running_hub, sample


def test_queue_order_and_what_it_leaves_out(hub: Hub) -> None:
    a_mid, a_top, a_low = anomaly(score=0.8, ts=T0 + 1), anomaly(score=0.95, ts=T0 + 2), anomaly(score=0.7, ts=T0 + 3)
    near, nearest, far = (sample(score=0.45, reason="low_confidence", ts=T0 + 4),
                          sample(score=0.52, reason="low_confidence", ts=T0 + 5),
                          sample(score=0.6, reason="low_confidence", ts=T0 + 6))
    r_old, r_new = sample(reason="random", ts=T0 + 7), sample(reason="random", ts=T0 + 8)
    requested = sample(reason="requested", ts=T0 + 9)
    annotated = anomaly(score=0.99, ts=T0 + 10)
    covered = anomaly(score=0.98, ts=T0 + 500)
    too_old = anomaly(score=0.97, ts=T0 - 91 * 86400)
    hub.ingest(online(), a_mid, a_top, a_low, near, nearest, far, r_old, r_new, requested, annotated, covered,
               too_old)
    tech = hub.client("technician")
    tech.post("/annotations", json={"trace_id": annotated.trace_id, "label": "fault", "technician_id": "t"})
    tech.post("/annotations", json={"device_id": "pump-1", "start_ts": T0 + 400, "end_ts": T0 + 600,
                                    "label": "fault", "technician_id": "t"})

    queue = tech.get("/queue").json()
    expected = [a_top, a_mid, a_low, nearest, near, far, r_new, r_old]
    assert [(q["trace_id"], q["reason"]) for q in queue] == [
        (p.trace_id, "anomaly" if p.__class__.__name__ == "Anomaly" else p.reason)  # type: ignore[attr-defined]
        for p in expected
    ]
    first = queue[0]
    assert first == {"trace_id": a_top.trace_id, "device_id": "pump-1", "ts": T0 + 2, "window_end": T0 + 2,
                     "score": 0.95,
                     "threshold": 0.5, "kind": "anomaly", "reason": "anomaly", "model_version": "v1", "pick": None}
    assert [q["trace_id"] for q in tech.get("/queue", params={"limit": 4}).json()] == [
        p.trace_id for p in expected[:4]
    ]

    # Labelling the top item takes it off the queue.
    tech.post("/annotations", json={"trace_id": a_top.trace_id, "label": "fault", "technician_id": "t"})
    assert tech.get("/queue", params={"limit": 1}).json()[0]["trace_id"] == a_mid.trace_id


def test_queue_filters_by_device_and_validates_limit(hub: Hub) -> None:
    mine, theirs = anomaly(device="pump-1"), anomaly(device="pump-2", score=0.99)
    hub.ingest(online(), online("pump-2"), mine, theirs)
    tech = hub.client("technician")
    assert [q["trace_id"] for q in tech.get("/queue", params={"device_id": "pump-1"}).json()] == [mine.trace_id]
    assert [q["trace_id"] for q in tech.get("/queue").json()] == [theirs.trace_id, mine.trace_id]
    assert tech.get("/queue", params={"limit": 0}).status_code == 422
    assert tech.get("/queue", params={"since": "nan"}).status_code == 422


def test_queue_since_leaves_older_predictions_out(hub: Hub) -> None:
    older, newer = anomaly(score=0.99, ts=T0 + 1), anomaly(score=0.6, ts=T0 + 2)
    hub.ingest(online(), older, newer)
    tech = hub.client("technician")
    assert [q["trace_id"] for q in tech.get("/queue").json()] == [older.trace_id, newer.trace_id]
    assert [q["trace_id"] for q in tech.get("/queue", params={"since": T0 + 2}).json()] == [newer.trace_id]
    assert tech.get("/queue", params={"since": T0 + 3}).json() == []
    assert tech.get("/queue", params={"limit": 501}).status_code == 422


def test_select_policy_offers_a_budget_of_the_candidates_random_share_first_then_closest(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub.db", queue_policy="select", queue_budget=0.5, queue_random_share=0.25) as hub:
        rows = [sample(score=0.5 + i / 100, reason="low_confidence", ts=T0 + i) for i in range(8)]
        hub.ingest(online(), *rows)
        queue = hub.client("technician").get("/queue").json()
        assert len(queue) == 4  # half of the 8 candidates
        assert queue[0]["pick"] == "random" and [q["pick"] for q in queue[1:]] == ["uncertainty"] * 3
        closest = sorted((r for r in rows if r.trace_id != queue[0]["trace_id"]), key=lambda r: r.score)[:3]
        assert [q["trace_id"] for q in queue[1:]] == [r.trace_id for r in closest]


def test_labels_service_doctests() -> None:
    result = doctest.testmod(hub.labels.service, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0

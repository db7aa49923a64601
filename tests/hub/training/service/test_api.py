"""``/retrain`` over HTTP: a real uvicorn server, the real training worker and a real retrain behind it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from pydantic import SecretStr

from hub.api import create_app
from hub.app.settings import HubSettings
from hub.training.service import TrainingService
from hub.training.triggers import TRIGGER_EVENT, TriggerPolicy
from tests.hub.api.conftest import TOKEN, TOKENS, serve
from tests.hub.training.conftest import World, training_settings


@contextmanager
def api(world: World, training: TrainingService | None) -> Iterator[dict[str, httpx.Client]]:
    """The hub API on `world`, with one client per role."""
    settings = HubSettings(tokens=TOKENS, mqtt_password=SecretStr("secret"))
    app = create_app(settings, world.store, clock=world.clock, registry=world.registry, training=training)
    with serve(app) as url:
        clients = {role: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
                   for role, token in TOKEN.items()}
        try:
            yield clients
        finally:
            for client in clients.values():
                client.close()


def test_a_retrain_runs_in_the_worker_and_the_api_reports_its_progress(drifted: World) -> None:
    service = drifted.service()
    service.start()
    try:
        with api(drifted, service) as client:
            assert client["viewer"].post("/retrain", json={"reason": "x"}).status_code == 403
            accepted = client["operator"].post("/retrain", json={"reason": "vibration drift", "actor": "ana"})
            assert accepted.status_code == 202, accepted.text
            body = accepted.json()
            job_id = body["job_id"]
            assert body["decision"] == {"fire": True, "kind": "manual", "reason": "requested by an operator",
                                        "blocked_by": None, "detail": ""}
            assert body["label_set_id"] == drifted.label_set_id and body["total_labels"] == len(drifted.fleet)

            busy = client["operator"].post("/retrain", json={"reason": "again"})
            assert busy.status_code == 409 and job_id in busy.json()["detail"]

            seen: list[tuple[str, str, float]] = []
            slowest = 0.0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = client["viewer"].get(f"/retrain/{job_id}")
                slowest = max(slowest, time.perf_counter() - started)
                assert response.status_code == 200
                job = response.json()
                seen.append((job["status"], job["stage"], job["progress"]))
                if job["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.02)
            listed = client["viewer"].get("/retrain", params={"limit": 5}).json()
            missing = client["viewer"].get("/retrain/no-such-job")
    finally:
        service.stop()

    assert job["status"] == "succeeded", job["error"]
    assert (job["stage"], job["progress"], job["gate_verdict"], job["actor"]) == ("done", 1.0, "pass", "operator:ana")
    assert drifted.registry.get(job["result_version"]).status == "candidate"
    assert job["details"]["passed"] is True and job["details"]["timings_s"]["train"] > 0
    progress = [p for _, _, p in seen]
    assert progress == sorted(progress)  # never goes back
    assert any(status == "running" and 0 < p < 1 for status, _, p in seen), seen
    assert "train" in {stage for _, stage, _ in seen}
    assert slowest < 2.0  # the API answers while the model trains
    assert listed[0]["id"] == job_id
    assert missing.status_code == 404
    events = [e.payload for e in drifted.store.events(kind=TRIGGER_EVENT)]
    (queued,) = [e for e in events if e.get("job_id") == job_id]
    assert (queued["actor"], queued["outcome"], queued["request_reason"]) == ("operator:ana", "queued",
                                                                             "vibration drift")
    assert any(e["outcome"] == "busy" and e["active_job"] == job_id for e in events)  # the refused second request


def test_a_guard_refuses_with_400_and_says_which(drifted: World) -> None:
    strict = drifted.service(settings=training_settings(triggers=TriggerPolicy(min_total_labels=10**6)))
    with api(drifted, strict) as client:
        refused = client["operator"].post("/retrain", json={"reason": "please"})
        unknown = client["operator"].post("/retrain", json={"reason": "please", "label_set_id": "ls-nope"})
        extra = client["operator"].post("/retrain", json={"reason": "please", "force": True})
    assert refused.status_code == 400
    detail = refused.json()["detail"]
    assert "min_labels" in detail and "need 1000000" in detail and "overrides the cooldown, not this" in detail
    assert unknown.status_code == 404 and "ls-nope" in unknown.json()["detail"]
    assert extra.status_code == 422
    assert drifted.store.events(kind=TRIGGER_EVENT)[-1].payload["outcome"] == "blocked"


def test_the_regimes_asked_for_are_recorded_on_the_job_and_a_feature_set_1_parent_fails_it_clearly(
        drifted: World) -> None:
    service = drifted.service()
    service.start()
    try:
        with api(drifted, service) as client:
            bad = client["operator"].post("/retrain", json={"reason": "x", "regimes": "nearby"})
            accepted = client["operator"].post("/retrain", json={"reason": "new regimes", "regimes": "field"})
            assert accepted.status_code == 202, accepted.text
            job = service.wait(accepted.json()["job_id"], timeout=60)
    finally:
        service.stop()
    assert bad.status_code == 422
    assert job.status == "failed" and job.details["regimes"] == "field" and job.result_version is None
    assert "regimes from the field are feature set 2's" in (job.error or "")


@pytest.mark.parametrize("path", ["/retrain", "/retrain/some-job"])
def test_without_training_the_routes_answer_503(drifted: World, path: str) -> None:
    with api(drifted, None) as client:
        response = client["viewer"].get(path)
        posted = client["operator"].post("/retrain", json={"reason": "x"})
    assert response.status_code == posted.status_code == 503
    assert response.json()["detail"] == "training is not enabled on this hub"

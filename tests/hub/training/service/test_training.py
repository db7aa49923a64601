"""Triggers over the real store: the periodic check (labels, drift, cooldown), manual requests and their
guards, and the ``retrain_trigger`` events they leave. No job runs here: the worker is not started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.labels.service import LabelSettings
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.store.rows import DRIFT_EVENT, DriftReferenceRow, IngestRecord
from hub.store.sqlite import SqliteHubStore
from hub.training.errors import RetrainBlockedError, TrainingBusyError, UnknownLabelSetError
from hub.training.service import TrainingService
from hub.training.triggers import TRIGGER_EVENT, TriggerPolicy
from shared.messages import Annotation, Anomaly, Status
from tests.hub.training.conftest import training_settings

T0 = 1_700_000_000.0
H = 3600.0
POLICY = TriggerPolicy(min_new_labels=10, min_total_labels=5, cooldown_s=H, schedule_interval_s=None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


def service(store: SqliteHubStore, tmp_path: Path, policy: TriggerPolicy = POLICY) -> TrainingService:
    registry = Registry(store, tmp_path / "models", SigningKey.generate())
    return TrainingService(store, registry, training_settings(triggers=policy), labels=LabelSettings(),
                           staging_dir=tmp_path / "staging", clock=lambda: T0)


def label(store: SqliteHubStore, n: int, *, start: int = 0) -> None:
    """`n` anomalies of pump-1, each confirmed by a technician."""
    messages: list = [Status(device_id="pump-1", ts=T0, state="online", site="site-a")]
    for i in range(start, start + n):
        trace = f"t{i:04d}"
        messages.append(Anomaly(device_id="pump-1", ts=T0 + i, trace_id=trace, window_start=T0 + i - 10,
                                window_end=T0 + i, score=0.9, threshold=0.5, decision=True, features=[0.1, 0.2]))
        messages.append(Annotation(device_id="pump-1", ts=T0 + i + 1, trace_id=trace, label="fault",
                                   technician_id="ann", signal="confirmed"))
    store.ingest_batch([IngestRecord(m, T0) for m in messages])


def triggers(store: SqliteHubStore) -> list[dict]:
    return [e.payload for e in store.events(kind=TRIGGER_EVENT)]


def test_the_periodic_check_fires_on_labels_then_drift_and_respects_the_cooldown(store, tmp_path) -> None:
    svc = service(store, tmp_path)
    assert svc.check(T0 + H) is None  # no labels at all
    label(store, 12)
    first = svc.check(T0 + H)
    assert first is not None
    job = store.training_job(first)
    assert job is not None and (job.status, job.trigger, job.actor) == ("queued", "labels", "hub:triggers")
    (event,) = triggers(store)
    assert (event["kind"], event["fire"], event["job_id"], event["new_labels"]) == ("labels", True, first, 12)
    assert job.trigger_id == f"trigger-{store.events(kind=TRIGGER_EVENT)[0].id}"

    assert svc.check(T0 + H) is None  # a job is queued: nothing more, no event
    store.update_training_job(first, status="succeeded", finished_ts=T0 + H)
    store.record_event(DRIFT_EVENT, {"scope": "fleet@v1", "report_id": 1}, ts=T0 + H)
    assert svc.check(T0 + 2.5 * H) is None  # drift, but no new label since: the same model again, not recorded
    label(store, 1, start=50)
    assert svc.check(T0 + H + 60) is None  # drift, but within the cooldown: blocked, not recorded
    assert len(triggers(store)) == 1

    second = svc.check(T0 + 2.5 * H)
    assert second is not None
    drift_job = store.training_job(second)
    assert drift_job is not None and drift_job.trigger == "drift"
    last = triggers(store)[-1]
    assert (last["kind"], last["drift_events"], last["drift_scopes"], last["new_labels"]) == ("drift", 1,
                                                                                             ["fleet@v1"], 1)
    assert drift_job.drift_cursor == store.events(kind=DRIFT_EVENT)[-1].id

    store.update_training_job(second, status="failed", finished_ts=T0 + 2.5 * H)
    assert svc.check(T0 + 5 * H) is None  # that drift event was consumed; no new labels
    label(store, 10, start=100)
    assert svc.check(T0 + 5 * H) is not None  # ten new labels


def test_a_retrain_the_gate_could_not_judge_is_retried_on_more_labels_without_a_cooldown(store, tmp_path) -> None:
    """insufficient_data changed nothing: no cooldown, the same drift still counts, and it retries once the
    labels have grown by a quarter (the same labels would give the same verdict)."""
    svc = service(store, tmp_path)
    label(store, 6)
    store.record_event(DRIFT_EVENT, {"scope": "fleet@v1", "report_id": 1}, ts=T0)
    first = svc.check(T0 + H)
    assert first is not None
    store.update_training_job(first, status="succeeded", gate_verdict="insufficient_data", finished_ts=T0 + H)
    assert svc.inputs(T0 + H).retry_at == 8  # ceil(6 * 1.25)
    label(store, 1, start=50)
    assert svc.check(T0 + H + 60) is None  # 7 labels: waiting for 8; the cooldown does not apply
    blocked = [e for e in triggers(store) if e["blocked_by"] is not None]
    assert blocked == []  # a blocked automatic trigger is logged, not recorded
    label(store, 1, start=51)
    second = svc.check(T0 + H + 120)
    assert second is not None
    retry = store.training_job(second)
    assert retry is not None and retry.trigger == "drift"  # the drift before the unjudged retrain still counts
    event = triggers(store)[-1]
    assert (event["kind"], event["drift_events"], event["new_labels"], event["retry_at"], event["last_retrain_ts"]) \
        == ("drift", 1, 8, 8, None)

    # A judged retrain starts the cooldown as before.
    store.update_training_job(second, status="succeeded", gate_verdict="fail", finished_ts=T0 + H + 120)
    label(store, 20, start=100)
    assert svc.inputs(T0 + H + 180).retry_at is None
    assert svc.check(T0 + H + 180) is None  # within the cooldown of the judged retrain
    assert svc.check(T0 + 2.5 * H) is not None


def test_new_labels_count_from_the_last_label_set_even_after_a_job_that_failed_without_one(store, tmp_path) -> None:
    svc = service(store, tmp_path)
    label(store, 12)
    first = svc.check(T0 + H)
    assert first is not None
    store.update_training_job(first, status="succeeded", gate_verdict="pass", finished_ts=T0 + H)
    failed = svc.request(actor="operator:ana", reason="again", now=T0 + H + 60).job_id
    assert failed is not None
    store.update_training_job(failed, status="failed", label_set_id=None, error="boom")
    label(store, 3, start=50)
    assert svc.inputs(T0 + 3 * H).new_labels == 3  # against the first job's 12, not against nothing


def test_a_manual_request_overrides_the_cooldown_but_not_the_minimum_of_labels(store, tmp_path) -> None:
    label(store, 6)
    strict = service(store, tmp_path, TriggerPolicy(min_total_labels=100, cooldown_s=H))
    with pytest.raises(RetrainBlockedError, match="min_labels: 6 validated labels, need 100") as blocked:
        strict.request(actor="operator:ana", reason="please", now=T0)
    assert blocked.value.decision.blocked_by == "min_labels"
    event = triggers(store)[-1]
    assert (event["kind"], event["fire"], event["outcome"], event["actor"], event["request_reason"]) == (
        "manual", False, "blocked", "operator:ana", "please")

    svc = service(store, tmp_path)
    outcome = svc.request(actor="operator:ana", reason="please", now=T0)
    assert outcome.decision.fire and outcome.job_id is not None
    store.update_training_job(outcome.job_id, status="succeeded")
    again = svc.request(actor="operator:ana", reason="again", now=T0 + 60)  # within the cooldown: allowed
    assert again.job_id is not None
    with pytest.raises(TrainingBusyError, match=f"already queued: {again.job_id}"):
        svc.request(actor="operator:bob", reason="me too", now=T0 + 61)
    assert (triggers(store)[-1]["outcome"], triggers(store)[-1]["active_job"]) == ("busy", again.job_id)
    with pytest.raises(UnknownLabelSetError):
        svc.inputs(T0, "ls-missing")


def test_only_fleet_wide_drift_asks_for_a_retrain(store, tmp_path) -> None:
    """Devices and cohorts are compared with the fleet-wide reference: their drift locates, it does not retrain."""
    svc = service(store, tmp_path)
    label(store, 6)  # enough labels overall, too few new ones to fire on labels
    for scope in ("device:pump-1@v1", "cohort:site-a/pump@v1", "device:pump-2@v1"):
        store.record_event(DRIFT_EVENT, {"scope": scope, "report_id": 1}, ts=T0)
    assert svc.check(T0 + H) is None
    assert triggers(store) == []
    assert svc.inputs(T0 + H).drift_events == 0

    store.record_event(DRIFT_EVENT, {"scope": "fleet@v1", "report_id": 2}, ts=T0)
    fired = svc.check(T0 + H)
    assert fired is not None
    assert (triggers(store)[-1]["drift_events"], triggers(store)[-1]["drift_scopes"]) == (1, ["fleet@v1"])


def test_drift_of_a_version_no_longer_active_does_not_retrain() -> None:
    from hub.training.triggers import counts_for_retrain

    both = TriggerPolicy(drift_scopes=("fleet", "cohort"))
    assert counts_for_retrain(both, "cohort:site-a/pump@v2", "v2")
    assert not counts_for_retrain(both, "fleet@v1", "v2")  # devices still on v1 during a rollout
    assert not counts_for_retrain(both, "device:d1@v2", "v2")
    assert counts_for_retrain(TriggerPolicy(), "fleet@v7", None)  # no active version yet: any


def test_drift_judged_before_the_operator_retook_the_reference_does_not_retrain(store, tmp_path,
                                                                                 initial_model_dir) -> None:
    """An operator who re-took the active version's drift reference declared the fleet as it then was normal: the
    drift events before it (judged against the replaced reference) ask for no retrain; those after it do."""
    svc = service(store, tmp_path)
    svc.retrainer.registry.register(initial_model_dir, actor="test", reason="the initial model", status="active")
    active = svc.retrainer.registry.active_version()
    assert active is not None
    label(store, 6)  # enough labels overall, too few new ones to fire on labels
    store.record_event(DRIFT_EVENT, {"scope": f"fleet@{active}", "report_id": 1}, ts=T0)
    store.save_drift_reference(DriftReferenceRow(
        id=0, version=active, ts=T0 + 10, actor="operator:ana", reason="commissioning", start=T0 - H, end=T0,
        devices=None, device_baselines=True, windows=500, summary={}, counts={}))
    assert svc.inputs(T0 + H).drift_events == 0 and svc.check(T0 + H) is None
    # a drift pass that began before the re-take writes its event just after it: still the replaced reference's
    # (seen on CI: 6 ms after the re-take, a fleet event against the manifest's reference fired a drift retrain)
    store.record_event(DRIFT_EVENT, {"scope": f"fleet@{active}", "report_id": 2, "reference_id": None}, ts=T0 + 11)
    assert svc.inputs(T0 + H).drift_events == 0 and svc.check(T0 + H) is None

    new = store.drift_references(active, limit=1)[0].id
    store.record_event(DRIFT_EVENT, {"scope": f"fleet@{active}", "report_id": 3, "reference_id": new}, ts=T0 + 20)
    assert svc.inputs(T0 + H).drift_events == 1 and svc.check(T0 + H) is not None
    assert triggers(store)[-1]["kind"] == "drift"

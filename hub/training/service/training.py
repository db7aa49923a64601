"""`TrainingService`: gathers the trigger inputs from the store, asks `triggers.decide`, records the
decision as a hub event and hands firing triggers to the worker. What the API, the CLI and the hub's
periodic job call; the decisions themselves are pure (`hub.training.triggers`).

Every decision that fires, and every manual request (refused or not), is recorded as a
``retrain_trigger`` event with its reason and numbers; its id names the trigger (``trigger-<id>``) in
the job, the registry record and the model's manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.labels.service import LabelSettings, validate_and_save
from hub.registry.service import Registry
from hub.store.ports import HubStore
from hub.store.rows import DRIFT_EVENT, DriftReferenceRow, EventRow, TrainingJobRow
from hub.training.errors import RetrainBlockedError, TrainingBusyError, UnknownLabelSetError
from hub.training.performance import PERFORMANCE_EVENT
from hub.training.service.intake import Registered, register_model
from hub.training.service.performance import monitor
from hub.training.service.retrain import REGIMES_DETAIL, LabelTransform, Retrainer
from hub.training.service.worker import TrainingWorker, execute_job
from hub.training.settings import RegimeSource, TrainingSettings
from hub.training.triggers import (
    TRIGGER_EVENT,
    TriggerDecision,
    TriggerInputs,
    TriggerOutcome,
    counts_for_retrain,
    decide,
    in_cooldown,
    retry_threshold,
    schedule_due,
)
from shared.ids import new_id

log = logging.getLogger(__name__)

_EVENT_PAGE = 1000
INSUFFICIENT_DATA = "insufficient_data"
_RECENT_JOBS = 50


class TrainingService:
    """Retraining for one hub: `request` (manual), `check` (periodic), `job`/`jobs`, `start`/`stop`."""

    def __init__(
        self,
        store: HubStore,
        registry: Registry,
        settings: TrainingSettings,
        *,
        labels: LabelSettings,
        staging_dir: Path,
        clock: Callable[[], float] = time.time,
        label_transform: LabelTransform | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.labels = labels
        self.clock = clock
        self.retrainer = Retrainer(store, registry, settings, labels=labels, staging_dir=staging_dir, clock=clock,
                                   label_transform=label_transform)
        self.worker = TrainingWorker(store, self.retrainer.run, clock=clock)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.worker.stop(timeout)

    # -- triggers ----------------------------------------------------------------------------------
    def request(self, *, actor: str, reason: str, now: float, label_set_id: str | None = None,
                regimes: RegimeSource | None = None) -> TriggerOutcome:
        """A manual retrain, queued on the worker: overrides the cooldown, not the minimum of labels. `regimes`:
        where feature set 2's regime statistics come from ("parent" or "field"; None: the settings'), recorded on
        the job.

        Raises TrainingBusyError (a job is queued or running), RetrainBlockedError (too few labels),
        UnknownLabelSetError. The request is recorded as an event in every case but the last.
        """
        outcome = self._manual(actor=actor, reason=reason, now=now, label_set_id=label_set_id)
        self.worker.submit("manual", actor, reason, **_job_fields(outcome, now, regimes))
        return outcome

    def retrain_now(self, *, actor: str, reason: str, now: float, label_set_id: str | None = None,
                    regimes: RegimeSource | None = None) -> TrainingJobRow:
        """A manual retrain run in the calling thread (the CLI): same guards, events and job row as `request`."""
        outcome = self._manual(actor=actor, reason=reason, now=now, label_set_id=label_set_id)
        job = self.worker.new_job("manual", actor, reason, **_job_fields(outcome, now, regimes))
        return execute_job(self.store, job.id, self.retrainer.run, clock=self.clock)

    def check(self, now: float) -> str | None:
        """The periodic job: retrain when drift, new labels or the schedule ask and no guard blocks.

        Returns the queued job's id, or None. Skips (records nothing) while a job is queued or running.
        """
        if self.worker.active_job() is not None:
            return None
        judged, _ = _history(self.store.training_jobs(limit=_RECENT_JOBS))
        if judged is not None and in_cooldown(self.settings.triggers, now=now, last_retrain_ts=judged.created_ts):
            return None  # nothing automatic may fire: skip validating every label (seconds with 10k of them)
        inputs = self.inputs(now)
        decision = decide(
            self.settings.triggers, now=now, last_retrain_ts=inputs.last_retrain_ts, new_labels=inputs.new_labels,
            total_labels=inputs.total_labels, drift_events=inputs.drift_events,
            schedule_due=schedule_due(self.settings.triggers, now=now, last_retrain_ts=inputs.last_retrain_ts),
            manual=False, retry_at=inputs.retry_at, performance_events=inputs.performance_events,
        )
        if not decision.fire:
            if decision.kind is not None:
                log.info("retrain wanted (%s) but blocked by %s: %s", decision.reason, decision.blocked_by,
                         decision.detail)
            return None
        job_id = new_id()
        event_id = self._record(decision, inputs, now, actor="hub:triggers", reason=decision.reason, job_id=job_id)
        trigger_id = f"trigger-{event_id}"
        try:
            self.worker.submit(decision.kind or "unknown", "hub:triggers", decision.reason, trigger_id=trigger_id,
                               label_set_id=inputs.label_set_id, drift_cursor=inputs.drift_cursor,
                               details={"trigger": decision.to_dict()}, job_id=job_id, created_ts=now)
        except TrainingBusyError:  # another process queued one between the check and now
            log.warning("trigger %s fired but a training job is already active", trigger_id)
            return None
        log.info("retrain triggered (%s): %s; job %s", decision.kind, decision.reason, job_id)
        return job_id

    def inputs(self, now: float, label_set_id: str | None = None) -> TriggerInputs:
        """The trigger inputs now; without `label_set_id` the current annotations are validated first."""
        if label_set_id is None:
            label_set_id = validate_and_save(self.store, self.labels, now=now).row.id
        elif self.store.label_set(label_set_id) is None:
            raise UnknownLabelSetError(f"no label set {label_set_id}")
        current = {i.trace_id for i in self.store.label_set_items(label_set_id)}
        jobs = self.store.training_jobs(limit=_RECENT_JOBS)
        judged, unjudged = _history(jobs)
        trained = next((j.label_set_id for j in jobs  # a job that failed before validating has no label set
                        if j.gate_verdict != INSUFFICIENT_DATA and j.label_set_id is not None), None)
        previous = set() if trained is None else {i.trace_id for i in self.store.label_set_items(trained)}
        retry_at = None
        if unjudged is not None and unjudged.label_set_id is not None:
            used = len(self.store.label_set_items(unjudged.label_set_id))
            retry_at = retry_threshold(self.settings.triggers, used)
        cursor = start = 0 if judged is None else judged.drift_cursor
        active = self.retrainer.registry.active_version()
        if self.settings.performance.enabled:
            monitor(self.store, label_set_id, self.settings.performance, now=now)
        degraded, cursor_after = self._performance_events(start, active)
        drift, scopes = 0, list[str]()
        # An operator who re-took the active version's drift reference declared the fleet as it was then normal:
        # drift judged before that (against the replaced reference) asks for no retrain.
        retaken = self.store.drift_references(active, limit=1) if active is not None else []
        while True:
            page = self.store.events(kind=DRIFT_EVENT, since_id=cursor, limit=_EVENT_PAGE)
            counted = [str(e.payload.get("scope")) for e in page if not retaken or _against(e, retaken[0])]
            counted = [s for s in counted if counts_for_retrain(self.settings.triggers, s, active)]
            drift += len(counted)
            scopes.extend(counted)
            if page:
                cursor = page[-1].id
            if len(page) < _EVENT_PAGE:
                break
        return TriggerInputs(
            label_set_id=label_set_id, total_labels=len(current), new_labels=len(current - previous),
            drift_events=drift, drift_cursor=max(cursor, cursor_after), drift_scopes=tuple(sorted(set(scopes))),
            last_retrain_ts=None if judged is None else judged.created_ts, retry_at=retry_at,
            performance_events=degraded,
        )

    def _performance_events(self, cursor: int, active: str | None) -> tuple[int, int]:
        """`PERFORMANCE_EVENT`s of the active version after event `cursor`, and the newest id seen."""
        count = 0
        while True:
            page = self.store.events(kind=PERFORMANCE_EVENT, since_id=cursor, limit=_EVENT_PAGE)
            count += sum(active is None or e.payload.get("model_version") == active for e in page)
            if page:
                cursor = page[-1].id
            if len(page) < _EVENT_PAGE:
                return count, cursor

    def register_model(self, path: Path, *, actor: str, reason: str, skip_gate: bool = False,
                       now: float | None = None) -> Registered:
        """Register a version made elsewhere and gate it against the active version (or skip the gate, audited):
        `hub.training.service.intake`. What ``POST /models`` and the CLI call."""
        return register_model(self.store, self.retrainer.registry, self.settings, path, actor=actor, reason=reason,
                              skip_gate=skip_gate, now=self.clock() if now is None else now)

    # -- reads -------------------------------------------------------------------------------------
    def job(self, job_id: str) -> TrainingJobRow | None:
        return self.store.training_job(job_id)

    def jobs(self, limit: int = 50) -> list[TrainingJobRow]:
        """Newest first."""
        return self.store.training_jobs(limit=limit)

    def wait(self, job_id: str, *, timeout: float = 600.0) -> TrainingJobRow:
        return self.worker.wait(job_id, timeout=timeout)

    # -- internals ---------------------------------------------------------------------------------
    def _manual(self, *, actor: str, reason: str, now: float, label_set_id: str | None) -> TriggerOutcome:
        active = self.worker.active_job()
        if active is not None:
            self.store.record_event(TRIGGER_EVENT, {
                "fire": False, "kind": "manual", "outcome": "busy", "actor": actor, "request_reason": reason,
                "active_job": active.id}, ts=now)
            raise TrainingBusyError(f"a training job is already {active.status}: {active.id}", active.id)
        inputs = self.inputs(now, label_set_id)
        decision = decide(
            self.settings.triggers, now=now, last_retrain_ts=inputs.last_retrain_ts, new_labels=inputs.new_labels,
            total_labels=inputs.total_labels, drift_events=inputs.drift_events, schedule_due=False, manual=True,
            retry_at=inputs.retry_at,
        )
        job_id = new_id() if decision.fire else None
        event_id = self._record(decision, inputs, now, actor=actor, reason=reason, job_id=job_id)
        if not decision.fire:
            raise RetrainBlockedError(f"retraining refused: {decision.blocked_by}: {decision.detail}", decision)
        return TriggerOutcome(decision, event_id, f"trigger-{event_id}", job_id, inputs)

    def _record(self, decision: TriggerDecision, inputs: TriggerInputs, now: float, *, actor: str, reason: str,
                job_id: str | None) -> int:
        payload: dict[str, Any] = {
            **decision.to_dict(), "outcome": "queued" if decision.fire else "blocked", "actor": actor,
            "request_reason": reason, "job_id": job_id, "label_set_id": inputs.label_set_id,
            "total_labels": inputs.total_labels, "new_labels": inputs.new_labels,
            "drift_events": inputs.drift_events, "drift_cursor": inputs.drift_cursor,
            "drift_scopes": list(inputs.drift_scopes[:20]), "last_retrain_ts": inputs.last_retrain_ts,
            "retry_at": inputs.retry_at, "performance_events": inputs.performance_events,
            "policy": self.settings.triggers.model_dump(),
        }
        return self.store.record_event(TRIGGER_EVENT, payload, ts=now)


def _history(jobs: list[TrainingJobRow]) -> tuple[TrainingJobRow | None, TrainingJobRow | None]:
    """From recent jobs (newest first): the newest retrain that counts as one (the gate judged it, or it
    failed), and the newest one the gate could not judge (``insufficient_data``) if it came after that.

    A retrain the gate could not judge changed nothing: the cooldown, the drift events and the new labels
    are all counted from the retrain before it, and it only sets the label count to retry at."""
    judged = next((j for j in jobs if j.gate_verdict != INSUFFICIENT_DATA), None)
    newest = jobs[0] if jobs else None
    unjudged = newest if newest is not None and newest.gate_verdict == INSUFFICIENT_DATA else None
    return judged, unjudged


def _job_fields(outcome: TriggerOutcome, now: float, regimes: RegimeSource | None = None) -> dict[str, Any]:
    """The job a fired trigger queues: named in advance (its event records the id), created at `now`; `regimes`
    (when asked for) in its details, where the retrain reads it (`hub.training.service.retrain.regimes_source`)."""
    details: dict[str, Any] = {"trigger": outcome.decision.to_dict()}
    if regimes is not None:
        details[REGIMES_DETAIL] = regimes
    return {"trigger_id": outcome.trigger_id, "label_set_id": outcome.inputs.label_set_id,
            "drift_cursor": outcome.inputs.drift_cursor, "details": details, "job_id": outcome.job_id,
            "created_ts": now}


def _against(event: EventRow, reference: DriftReferenceRow) -> bool:
    """Whether a drift event was judged against `reference` (the active version's, re-taken by an operator): by the
    reference its report names; an event stored before payloads named it, by whether it came after the re-take."""
    if "reference_id" in event.payload:
        return event.payload["reference_id"] == reference.id
    return event.ts >= reference.ts

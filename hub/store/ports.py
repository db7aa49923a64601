"""What the hub asks of its store, one small protocol per role; `HubStore` is all of them plus `close`.

A hub service types its store with the roles it uses; `open_store(url)` returns a `HubStore`, so a
PostgreSQL store is a second implementation of these protocols, not a change to ingest, labels or the API.
Implementations are thread-safe and their writes idempotent. The protocols are runtime-checkable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from hub.store.retention import Cutoffs, Pruned
from hub.store.rows import (
    AnnotationRow,
    AuditRow,
    DeadLetter,
    DeadLetterRow,
    Device,
    DriftReferenceRow,
    DriftReportRow,
    EventRow,
    ExclusionRow,
    FleetPage,
    FleetQuery,
    IncidentEventRow,
    IncidentMember,
    IncidentPass,
    IncidentQuery,
    IncidentRow,
    IngestRecord,
    IngestResult,
    LabelItemRow,
    LabelSetRow,
    MissingTrace,
    ModelEventRow,
    ModelVersionRow,
    NotificationDraft,
    NotificationRow,
    PredictionKind,
    PredictionRow,
    QueueReason,
    RawWindowRow,
    RolloutRow,
    SequenceHole,
    SequenceUpdate,
    StageStatsRow,
    StatsRow,
    StatsSum,
    StoreCounts,
    TrainingJobRow,
)


@runtime_checkable
class IngestStore(Protocol):
    """Device messages and dead letters in, and what was stored back out: the ingest worker, the API's reads."""

    def ingest_batch(
        self, records: Sequence[IngestRecord], dead_letters: Sequence[DeadLetter] = ()
    ) -> IngestResult:
        """Store records (and dead letters) in one transaction; a message seen before is not stored again.

        Predictions are keyed by trace_id, stats and model events by msg_id, annotations by
        annotation_id. A status updates the device registry unless it is older than the one held.
        """
        ...

    def add_dead_letter(
        self,
        topic: str,
        payload_prefix: bytes,
        reason: str,
        detail: str,
        ts: float,
        *,
        payload_size: int | None = None,
        device_id: str | None = None,
    ) -> None:
        """Record one refused message (its first DEAD_LETTER_PAYLOAD_BYTES are kept)."""
        ...

    def dead_letters(self, limit: int = 100, reason: str | None = None) -> list[DeadLetterRow]:
        """Newest first."""
        ...

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters by reason."""
        ...

    # -- reads of what was stored ------------------------------------------------------------------
    def prediction(self, trace_id: str) -> PredictionRow | None: ...

    def predictions(
        self,
        start: float,
        end: float,
        *,
        kind: PredictionKind | None = None,
        device_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[PredictionRow]:
        """Predictions with ``start <= ts < end``, oldest first."""
        ...

    def received_predictions(
        self,
        *,
        received_since: float,
        ts_since: float,
        kind: PredictionKind,
        reason: str | None = None,
        device_ids: Sequence[str] | None = None,
        limit: int,
    ) -> list[PredictionRow]:
        """Predictions of `kind` (and `reason`, when given) the hub received at or after `received_since` and the
        device stamped at or after `ts_since` (the caller's clock skew before it), newest first, at most `limit`:
        a rollout stage's traffic (`hub.rollout.service.traffic`)."""
        ...

    def stats_between(self, start: float, end: float, device_ids: Sequence[str] | None = None) -> list[StatsRow]:
        """Stats whose period ends in ``[start, end)``, oldest first."""
        ...

    def stats_sums(self, start: float, end: float) -> list[StatsSum]:
        """Stats whose period ends in ``[start, end)`` summed per device, model version and histogram layout
        (read from roll-ups cumulative within each UTC day, ≤ 2 per device and day, with raw rows added or
        subtracted at ragged ends: `hub.store.rollup`; a window from an hour to now reads no raw row); by device,
        version."""
        ...

    def annotations(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        device_id: str | None = None,
        trace_id: str | None = None,
        limit: int | None = None,
    ) -> list[AnnotationRow]:
        """Annotations with ``since <= ts < until`` (either bound optional), oldest first."""
        ...

    def model_events(
        self, *, device_id: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[ModelEventRow]:
        """Model events with ``ts >= since``, oldest first."""
        ...

    def counts(self) -> StoreCounts: ...


@runtime_checkable
class DeviceStore(Protocol):
    """The device registry: presence and versions (kept by ingest from statuses) and explicit cohorts."""

    def devices(self) -> list[Device]:
        """Every known device, by id."""
        ...

    def device(self, device_id: str) -> Device | None: ...

    def fleet(self, query: FleetQuery) -> FleetPage:
        """One page of the filtered fleet and its counts (the console's fleet page: tens of thousands of devices)."""
        ...

    def set_cohort(self, device_id: str, cohort: str | None) -> None:
        """Put a device in an explicit cohort (None: back to its site)."""
        ...


@runtime_checkable
class LabelStore(Protocol):
    """Annotations joined to predictions, the labeling queue and stored label sets."""

    def annotation(self, annotation_id: str) -> AnnotationRow | None: ...

    def annotations_covering(self, device_id: str, ts: float) -> list[AnnotationRow]:
        """Range annotations (no trace_id) of `device_id` with ``start_ts <= ts <= end_ts``, oldest first."""
        ...

    def predictions_by_trace(self, trace_ids: Sequence[str]) -> list[PredictionRow]:
        """The stored predictions among `trace_ids` (unknown ones are left out), by trace_id."""
        ...

    def unlabelled_predictions(
        self, reason: QueueReason, *, since: float | None = None, device_id: str | None = None, limit: int = 100
    ) -> list[PredictionRow]:
        """Predictions with no annotation (by trace_id or a covering range) with ``ts >= since``, in queue order.

        ``anomaly``: anomalies, highest score first. ``low_confidence``: such samples, closest to the
        threshold first. ``random``: the random baseline slice, newest first.
        """
        ...

    def missing_traces(
        self, *, since: float | None = None, device_id: str | None = None, limit: int | None = None
    ) -> list[MissingTrace]:
        """Traces named by annotations made at ``ts >= since`` and absent from predictions, oldest first."""
        ...

    def save_label_set(
        self,
        summary: Mapping[str, Any],
        items: Sequence[LabelItemRow],
        exclusions: Sequence[ExclusionRow],
        *,
        ts: float,
    ) -> str:
        """Store a label set (``summary`` carries ``id`` and ``fingerprint``) in one transaction; returns its id.

        The id is content-addressed: saving one again keeps its `created_ts`, sets `validated_ts` to `ts`
        and replaces its summary, items and exclusions (the account of what was left out may have changed).
        """
        ...

    def label_sets(self, limit: int = 100) -> list[LabelSetRow]:
        """Latest validated first."""
        ...

    def label_set(self, label_set_id: str) -> LabelSetRow | None: ...

    def label_set_items(
        self, label_set_id: str, *, trace_id: str | None = None, limit: int | None = None
    ) -> list[LabelItemRow]:
        """By trace_id."""
        ...

    def label_exclusions(
        self,
        label_set_id: str,
        *,
        trace_id: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
    ) -> list[ExclusionRow]:
        """By annotation_id, then trace_id."""
        ...


@runtime_checkable
class DriftStore(Protocol):
    """Drift reports and the hub's append-only event log (a drift verdict and its event are one write)."""

    def save_drift_report(self, report: Mapping[str, Any], scope: str, verdict: str, ts: float) -> int:
        """Store a drift report (``DriftReport.to_dict()``); returns its id.

        A ``drift`` verdict also records a `DRIFT_EVENT` (report id, scope, reason, drifted features) in
        the same transaction, so a consumer of `events` never sees one without the other.
        """
        ...

    def save_drift_reports(self, reports: Sequence[tuple[Mapping[str, Any], str, str]], ts: float) -> list[int]:
        """Store (report, scope, verdict) triples as `save_drift_report` does, all in one transaction; their ids in
        order. What a fleet's drift run writes: one report per device, cohort and the fleet."""
        ...

    def drift_reports(self, limit: int = 100, scope: str | None = None) -> list[DriftReportRow]:
        """Newest first."""
        ...

    def record_event(self, kind: str, payload: Mapping[str, Any], ts: float | None = None) -> int:
        """Append a hub event (e.g. ``drift_detected``, a retraining trigger); returns its id.

        `ts` defaults to now.
        """
        ...

    def events(self, *, kind: str | None = None, since_id: int = 0, limit: int = 100) -> list[EventRow]:
        """Events with id > `since_id`, oldest first: a consumer remembers the last id it handled."""
        ...


@runtime_checkable
class RegistryStore(Protocol):
    """The model registry: versions with their manifests, statuses and audit trail."""

    def save_model_version(self, row: ModelVersionRow, *, actor: str) -> None:
        """Register a new version (never overwrites one) with an audit row, in one transaction."""
        ...

    def set_model_status(
        self, version: str, status: str, *, actor: str, action: str, reason: str, ts: float,
        details: Mapping[str, Any] | None = None, gate: Mapping[str, Any] | None = None,
    ) -> ModelVersionRow:
        """Move a version to `status` (recording a gate decision if given) with an audit row."""
        ...

    def model_version(self, version: str) -> ModelVersionRow | None: ...

    def model_versions(self, *, status: str | None = None, limit: int = 100) -> list[ModelVersionRow]:
        """Newest first."""
        ...

    def model_audit(self, *, version: str | None = None, limit: int = 100) -> list[AuditRow]:
        """Oldest first."""
        ...

    def next_assign_counter(self, device_id: str, *, floor: int = 0) -> int:
        """The device's next signed-assignment counter (persisted; above every earlier one, at least `floor`)."""
        ...


@runtime_checkable
class RolloutStore(Protocol):
    """Staged rollouts (revision-guarded writes) and the slim stats a stage is judged on."""

    def create_rollout(self, row: RolloutRow, *, event: Mapping[str, Any]) -> bool:
        """Insert a rollout with its hub event, in one transaction; False when another one is running."""
        ...

    def update_rollout(
        self, rollout_id: str, *, revision: int, status: str, updated_ts: float, state: Mapping[str, Any],
        decision: Mapping[str, Any] | None, event: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a rollout's new state (and hub event) if it is still at `revision`; False if it moved on."""
        ...

    def rollout(self, rollout_id: str) -> RolloutRow | None: ...

    def rollouts(self, *, status: str | None = None, limit: int = 100) -> list[RolloutRow]:
        """Newest first."""
        ...

    def stage_stats(
        self, *, period_end_since: float, received_since: float, device_ids: Sequence[str] | None = None
    ) -> list[StageStatsRow]:
        """Stats (without feature histograms) ending at or after `period_end_since`, received at or after
        `received_since`, oldest first: what a rollout stage is judged on."""
        ...


@runtime_checkable
class TrainingStore(Protocol):
    """Retraining jobs, the model versions they reserve, and the frozen evaluation slice."""

    def create_training_job(self, row: TrainingJobRow) -> TrainingJobRow | None:
        """Insert a queued job unless another one is queued or running (then None), in one transaction."""
        ...

    def update_training_job(self, job_id: str, **fields: Any) -> TrainingJobRow:
        """Set some of a job's status, stage, progress, result_version, gate_verdict, error, timestamps."""
        ...

    def training_job(self, job_id: str) -> TrainingJobRow | None: ...

    def training_jobs(self, *, status: str | None = None, limit: int = 100) -> list[TrainingJobRow]:
        """Newest first."""
        ...

    def fail_unfinished_training_jobs(self, *, error: str, ts: float) -> list[str]:
        """Mark every queued or running job failed (nothing runs them after a restart); returns their ids."""
        ...

    def reserve_model_version(self, job_id: str, *, prefix: str = "v") -> str:
        """The next free ``v<N>`` (over registered and reserved versions), recorded on the job atomically."""
        ...

    def freeze_eval_slice(self, assignments: Mapping[str, bool], *, ts: float) -> dict[str, bool]:
        """Record trace → in-eval-slice for unseen traces; return the stored (first) assignment of each."""
        ...

    def eval_slice_assignments(self, trace_ids: list[str]) -> dict[str, bool]:
        """The stored assignment of each of `trace_ids` that has one."""
        ...

    def eval_slice(self, *, limit: int | None = None) -> list[tuple[str, float]]:
        """(trace_id, frozen_at) of the traces in the evaluation slice, oldest first."""
        ...


@runtime_checkable
class RetentionStore(Protocol):
    """Pruning what grows without bound (`hub.store.retention`): the hub service's retention job."""

    def prune(self, cutoffs: Cutoffs, *, dead_letters_max_rows: int, dead_letters_max_bytes: int,
              batch_rows: int = 5000) -> Pruned:
        """Delete rows older than `cutoffs` (and dead letters past the count and byte bounds, oldest first),
        never what labels or training still refer to; how many went from each table."""


class SequenceStore(Protocol):
    """Per-device sequence numbers: what arrived, the holes below the highest, and the gaps reported."""

    def track_sequences(self, seqs: Mapping[str, Sequence[int]], *, now: float) -> SequenceUpdate:
        """Fold committed seqs (device → numbers) in: open holes for skipped numbers, shrink holes they fill."""
        ...

    def device_sequence(self, device_id: str) -> int | None:
        """The highest seq received from a device; None before its first sequenced message."""
        ...

    def sequence_holes(self, *, device_id: str | None = None, reported: bool | None = None,
                       limit: int = 1000) -> list[SequenceHole]:
        """Open holes by device and seq; `reported` selects reported (True) or not yet reported (False) ones."""
        ...

    def report_holes(self, holes: Sequence[SequenceHole], *, ts: float) -> list[int]:
        """Mark holes reported and record a ``sequence_gap`` event for each one not reported before (one
        transaction); the event ids."""
        ...

    def mark_holes_requested(self, hole_ids: Sequence[int], *, ts: float) -> None:
        """Count a resend request for these holes."""
        ...


@runtime_checkable
class ReferenceStore(Protocol):
    """Drift references taken from the fleet's own stats, per model version, with their audit rows."""

    def save_drift_reference(self, row: DriftReferenceRow) -> DriftReferenceRow:
        """Store a new reference (it becomes the version's current one) and audit it, in one transaction."""
        ...

    def drift_reference(self, version: str) -> DriftReferenceRow | None:
        """The version's current reference (its newest), with its counts; None when it has none."""
        ...

    def drift_references(self, version: str, *, limit: int = 100) -> list[DriftReferenceRow]:
        """The version's references, newest first, without their counts."""
        ...

    def first_stats_ts(self, version: str) -> float | None:
        """When `version`'s first stored stats period started (None: no stats of it)."""
        ...

    def stats_ends(self, version: str) -> tuple[float, float] | None:
        """The first and last period end of `version`'s stored stats (None: no stats of it)."""
        ...


@runtime_checkable
class IncidentStore(Protocol):
    """Incidents built from ingested anomalies (`hub.incidents`), technicians' changes, and the notification log."""

    def incident_cursor(self) -> int:
        """Where the grouping pass is in the anomalies, in commit order (0 before the first pass)."""
        ...

    def anomalies_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        """Anomalies committed after `cursor` that belong to no incident yet, in commit order, and the cursor after
        the last one returned (`cursor` itself when none)."""
        ...

    def active_incidents(self, device_ids: Sequence[str] | None = None) -> list[IncidentRow]:
        """Pending, open and acknowledged incidents (of these devices), by device and start."""
        ...

    def save_incident_pass(self, p: IncidentPass) -> bool:
        """Write one grouping pass in one transaction if the cursor is still `p.cursor_from` and every updated
        incident still at its revision; False (nothing written) otherwise."""
        ...

    def write_incident(
        self, row: IncidentRow, *, events: Sequence[IncidentEventRow] = (),
        notifications: Sequence[NotificationDraft] = (), annotations: Sequence[IngestRecord] = (),
    ) -> bool:
        """Insert `row`, or update it if still at `row.revision`, with its events, notifications and annotations
        (stored as `IngestStore.ingest_batch` stores them) in one transaction; False if it moved on."""
        ...

    def incident(self, incident_id: str) -> IncidentRow | None: ...

    def incidents(self, query: IncidentQuery) -> list[IncidentRow]:
        """Filtered, newest start first, `query.offset` rows skipped."""
        ...

    def incident_windows(self, incident_id: str, *, limit: int | None = None) -> list[IncidentMember]:
        """The incident's alarm windows, oldest first."""
        ...

    def incident_events(self, incident_id: str) -> list[IncidentEventRow]:
        """The incident's history, oldest first."""
        ...

    def pending_notifications(self, *, limit: int = 1000) -> list[NotificationRow]:
        """Deliveries not yet made nor given up, oldest first (due or not: the notifier keeps each target's order)."""
        ...

    def record_delivery(self, notification_id: int, *, ok: bool, now: float, status_code: int | None = None,
                        error: str | None = None, next_attempt_ts: float | None = None) -> None:
        """Log one attempt: delivered (`ok`), tried again at `next_attempt_ts`, or (neither) given up."""
        ...

    def notifications(self, *, incident_id: str | None = None, status: str | None = None,
                      limit: int = 100) -> list[NotificationRow]:
        """The delivery log, oldest first."""
        ...


class LeaseStore(Protocol):
    """Named leases with an expiry: which hub process runs the background jobs (`hub.app.leader`)."""

    def acquire_lease(self, name: str, holder: str, *, ttl_s: float, now: float) -> bool:
        """Take or renew `name` for `holder` until ``now + ttl_s``; False while another holder's lease runs."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give `name` up if `holder` holds it (a stopping leader: another process takes over at once)."""
        ...

    def lease_holder(self, name: str, *, now: float) -> str | None:
        """Who holds `name` at `now`; None if nobody does."""
        ...


@runtime_checkable
class RawWindowStore(Protocol):
    """Raw sensor windows asked of devices (`hub.store.sqlite.windows`); stored ones arrive through ingest."""

    def request_raw_windows(self, requests: Sequence[tuple[str, str]], *, ts: float) -> list[str]:
        """Record that the hub asks for these (trace id, device id) windows; return the trace ids not asked before."""
        ...

    def raw_window(self, trace_id: str) -> RawWindowRow | None: ...

    def raw_windows_of(self, trace_ids: Sequence[str]) -> dict[str, RawWindowRow]:
        """The rows of these traces that exist (any state), by trace id: one read for many traces."""
        ...

    def stored_raw_windows(self, *, since: float, limit: int = 10_000) -> list[RawWindowRow]:
        """Stored windows received at or after `since`, the newest first (at most `limit`)."""
        ...

    def random_windows_unasked(self, *, since: float, limit: int) -> list[tuple[str, str]]:
        """(trace id, device id) of the predictions drawn into the random slice (reason ``random``: samples and the
        alarms drawn with them) scored at or after `since` (their `ts`) that no raw window row names yet (never
        asked, or asked and pruned), the newest first (at most `limit`)."""
        ...

    def due_raw_windows(self, *, asked_before: float, limit: int = 500) -> list[RawWindowRow]:
        """Requests not answered and not sent since `asked_before` (never sent first), oldest first."""
        ...

    def mark_raw_windows_asked(self, trace_ids: Sequence[str], *, ts: float) -> None:
        """The command asking for these went out at `ts`."""
        ...

    def expire_raw_window_requests(self, *, max_asks: int, asked_before: float, ts: float) -> int:
        """Requests asked `max_asks` times, the last before `asked_before`, become ``unavailable``; return how many."""
        ...

    def prune_raw_windows(self, *, before_ts: float) -> int:
        """Delete raw windows (any state) requested before `before_ts`; return how many."""
        ...


@runtime_checkable
class HubStore(
    IngestStore, DeviceStore, LabelStore, DriftStore, RegistryStore, RolloutStore, TrainingStore, RetentionStore,
    SequenceStore, ReferenceStore, IncidentStore, LeaseStore, RawWindowStore,
    Protocol,
):
    """Everything the hub stores and asks: every role, and `close`."""

    def close(self) -> None: ...


__all__ = [
    "DeviceStore",
    "DriftStore",
    "HubStore",
    "IncidentStore",
    "IngestStore",
    "LabelStore",
    "LeaseStore",
    "RawWindowStore",
    "ReferenceStore",
    "RegistryStore",
    "RetentionStore",
    "RolloutStore",
    "SequenceStore",
    "TrainingStore",
]

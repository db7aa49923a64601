"""The hub store's one narrow interface (`HubStore`) and the small typed rows it takes and returns.

Everything the hub reads or writes goes through these methods, so a PostgreSQL store is a second
implementation chosen by `open_store(url)`, not a change to ingest, labels, drift or the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from hub.store.registry import AuditRow, ModelVersionRow
from hub.store.rollouts import RolloutRow, StageStatsRow
from hub.store.training import TrainingJobRow
from shared.messages import Annotation, Anomaly, ModelEvent, Sample, Stats, Status

DeviceMessage: TypeAlias = Status | Anomaly | Sample | Stats | Annotation | ModelEvent
PredictionKind = Literal["anomaly", "sample"]

DRIFT_EVENT = "drift_detected"
"""The event a drift verdict of ``drift`` records, atomically with its report: the retraining trigger."""

DEAD_LETTER_PAYLOAD_BYTES = 4096
"""How much of a refused payload a dead letter keeps: enough to see what went wrong, bounded in size."""


# --- what goes in ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestRecord:
    """A validated device message and when the hub received it (hub clock)."""

    message: DeviceMessage
    received_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the hub refused: where it came from, its first bytes and why."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    ts: float
    payload_size: int | None = None  # of the whole payload; defaults to len(payload)
    device_id: str | None = None  # when the topic names one


# --- what comes out -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the store refused although it decoded (e.g. a count beyond 64-bit): dead-letter it."""

    index: int  # into the records passed to `ingest_batch`
    reason: str
    detail: str


@dataclass(frozen=True)
class IngestResult:
    """What one `ingest_batch` did. Keys of `stored`/`duplicates` are message kinds (``anomaly`` …)."""

    stored: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    status_applied: int = 0
    status_ignored: int = 0  # older than what the store holds (out of order) or a redelivery
    dead_letters: int = 0
    rejected: tuple[Rejected, ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    """A device as the registry knows it. `last_seen` is hub time; `cohort` falls back to `site`."""

    device_id: str
    online: bool
    last_seen: float | None
    model_version: str | None
    agent_version: str | None
    site: str | None
    asset_type: str | None
    cohort: str | None
    shadow_version: str | None = None
    status_ts: float | None = None  # device clock of the status the row reflects
    last_ts: float | None = None  # device clock of the newest message of any kind
    first_seen: float | None = None


@dataclass(frozen=True, slots=True)
class PredictionRow:
    trace_id: str
    msg_id: str
    kind: PredictionKind
    device_id: str
    ts: float
    received_at: float
    model_version: str | None
    unit: str | None
    window_start: float
    window_end: float
    score: float
    threshold: float
    decision: bool
    reason: str | None  # why a sample was sent (random | low_confidence); None for anomalies
    features: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class StatsRow:
    msg_id: str
    device_id: str
    ts: float
    received_at: float
    model_version: str | None
    period_start: float
    period_end: float
    windows: int
    anomalies: int
    samples: int
    bad_readings: int
    bad_rows: int
    inference_errors: int
    nan_scores: int
    feature_hist: list[list[int]]
    score_hist: list[int]
    latency_p50_ms: float | None
    latency_p99_ms: float | None


@dataclass(frozen=True, slots=True)
class AnnotationRow:
    annotation_id: str
    msg_id: str
    device_id: str
    ts: float
    received_at: float
    model_version: str | None
    trace_id: str | None
    start_ts: float | None
    end_ts: float | None
    label: str
    fault_type: str | None
    technician_id: str
    confidence: float
    signal: str
    note: str | None


@dataclass(frozen=True, slots=True)
class ModelEventRow:
    msg_id: str
    device_id: str
    ts: float
    received_at: float
    model_version: str | None
    event: str
    version: str
    detail: str | None
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: int
    ts: float
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes  # the first DEAD_LETTER_PAYLOAD_BYTES
    payload_size: int


@dataclass(frozen=True, slots=True)
class DriftReportRow:
    id: int
    ts: float
    scope: str
    verdict: str
    report: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    ts: float
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Row counts for metrics and health pages."""

    anomalies: int
    samples: int
    stats: int
    annotations: int
    model_events: int
    devices: int
    devices_online: int
    dead_letters: int
    drift_reports: int
    events: int


QueueReason = Literal["anomaly", "low_confidence", "random"]
"""Why a prediction is in the labeling queue: an anomaly, a low-confidence sample or the random baseline slice."""


@dataclass(frozen=True, slots=True)
class LabelItemRow:
    """One training label of a stored label set (1 fault, 0 no fault)."""

    trace_id: str
    device_id: str
    label: int
    weight: float
    confidence: float
    n_annotations: int
    cohort: str | None
    model_version: str | None


@dataclass(frozen=True, slots=True)
class ExclusionRow:
    """Why one annotation (for one trace, or None while pending) is not in a label set."""

    annotation_id: str
    trace_id: str | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class LabelSetRow:
    """A stored label set: its content-addressed id, first and latest validation, and its summary."""

    id: str
    fingerprint: str
    created_ts: float
    validated_ts: float
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MissingTrace:
    """A trace that annotations name (from `device_id`) but whose prediction the hub has not stored."""

    trace_id: str
    device_id: str
    n_annotations: int
    first_ts: float
    last_ts: float


class HubStore(Protocol):
    """Everything the hub stores and asks. Implementations are thread-safe; writes are idempotent."""

    # -- ingest ----------------------------------------------------------------------------------
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

    # -- devices ---------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """Every known device, by id."""
        ...

    def device(self, device_id: str) -> Device | None: ...

    def set_cohort(self, device_id: str, cohort: str | None) -> None:
        """Put a device in an explicit cohort (None: back to its site)."""
        ...

    # -- reads -----------------------------------------------------------------------------------
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

    def stats_between(self, start: float, end: float, device_ids: Sequence[str] | None = None) -> list[StatsRow]:
        """Stats whose period ends in ``[start, end)``, oldest first."""
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

    # -- drift and events ------------------------------------------------------------------------
    def save_drift_report(self, report: Mapping[str, Any], scope: str, verdict: str, ts: float) -> int:
        """Store a drift report (``DriftReport.to_dict()``); returns its id.

        A ``drift`` verdict also records a `DRIFT_EVENT` (report id, scope, reason, drifted features) in
        the same transaction, so a consumer of `events` never sees one without the other.
        """
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

    # -- labels (hub API) ------------------------------------------------------------------------
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

    # -- model registry ----------------------------------------------------------------------------
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

    # -- rollouts -----------------------------------------------------------------------------------
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

    # -- training --------------------------------------------------------------------------------
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

    def close(self) -> None: ...

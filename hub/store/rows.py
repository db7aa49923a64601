"""The hub store's rows and records: the frozen values every store takes and returns. Backend-neutral.

A second store (PostgreSQL) implements `hub.store.ports` with these types and imports nothing of SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from shared.messages import Annotation, Anomaly, ModelEvent, Sample, Stats, Status

DeviceMessage: TypeAlias = Status | Anomaly | Sample | Stats | Annotation | ModelEvent
PredictionKind = Literal["anomaly", "sample"]

DRIFT_EVENT = "drift_detected"
SEQUENCE_GAP_EVENT = "sequence_gap"  # a device's sequence numbers skipped some (hub.delivery)
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


# --- what comes out: ingest and devices -----------------------------------------------------------


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
class DriftReferenceRow:
    """A model version's drift reference taken from the fleet's own stats (`hub.drift.baselines`).

    `counts` holds the reference itself (``fleet``, and per ``devices`` and ``cohorts``), `summary` what went in
    and what was left out; the newest row of a version is the one drift compares with. `id` is 0 until saved.
    """

    id: int
    version: str
    ts: float
    actor: str
    reason: str
    start: float
    end: float
    devices: list[str] | None
    device_baselines: bool
    windows: int
    summary: dict[str, Any]
    counts: dict[str, Any]


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


# --- labels ---------------------------------------------------------------------------------------

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


# --- model registry -------------------------------------------------------------------------------

ModelStatus = Literal["candidate", "rejected", "insufficient_data", "shadow", "canary", "active", "retired",
                      "rolled_back"]
MODEL_STATUSES: tuple[str, ...] = ("candidate", "rejected", "insufficient_data", "shadow", "canary", "active",
                                   "retired", "rolled_back")
"""``rejected``: the gate (or an operator) found the version worse; ``insufficient_data``: the gate could not
judge it (too little labelled data); neither is ever rolled out."""


@dataclass(frozen=True, slots=True)
class ModelVersionRow:
    """One model version in the registry, with its manifest, signature and gate record."""

    version: str
    parent_version: str | None
    status: str
    created_ts: float
    updated_ts: float
    created_by: str
    reason: str
    trigger_id: str | None
    sha256: str
    signature: str
    manifest: dict[str, Any]
    gate: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One change to a model version: who, when, what, why, and the numbers behind it."""

    id: int
    ts: float
    version: str
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str
    details: dict[str, Any]


# --- rollouts -------------------------------------------------------------------------------------

ROLLOUT_EVENT = "rollout"
"""The hub event kind of every rollout change (payload: rollout_id, action, actor, stages, status, reason…)."""


@dataclass(frozen=True, slots=True)
class RolloutRow:
    """One rollout: who started it and why, its plan, its state, its last decision; `revision` counts writes."""

    id: str
    candidate: str
    incumbent: str
    status: str
    created_ts: float
    updated_ts: float
    actor: str
    reason: str
    plan: dict[str, Any]
    state: dict[str, Any]
    decision: dict[str, Any] | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class StageStatsRow:
    """The part of a stats row a rollout judges (no feature histograms): cheap to read on every tick."""

    device_id: str
    model_version: str | None
    received_at: float
    windows: int
    anomalies: int
    inference_errors: int
    nan_scores: int
    latency_p99_ms: float | None
    score_hist: list[int]


# --- training -------------------------------------------------------------------------------------

JobStatus = Literal["queued", "running", "succeeded", "failed"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed")
ACTIVE_JOB_STATUSES: tuple[str, ...] = ("queued", "running")


@dataclass(frozen=True, slots=True)
class TrainingJobRow:
    """One retraining job: why it ran, how far it got, what it made.

    `result_version` is the version reserved for the job (registered once the job gets that far);
    `gate_verdict` is ``pass``, ``fail`` or ``insufficient_data``; `drift_cursor` is the newest drift
    event the job's trigger had seen, so the next trigger counts only newer ones.
    """

    id: str
    status: str
    stage: str
    progress: float
    trigger: str
    trigger_id: str | None
    actor: str
    reason: str
    label_set_id: str | None
    result_version: str | None
    gate_verdict: str | None
    error: str | None
    drift_cursor: int
    created_ts: float
    started_ts: float | None
    finished_ts: float | None
    details: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES



@dataclass(frozen=True, slots=True)
class SequenceHole:
    """Sequence numbers ``lo..hi`` (inclusive) of a device the hub has not received, though it has later ones.

    `reported`: when it was reported as a gap (None while within the grace period); `requests`: how many
    times the device was asked to resend them.
    """

    id: int
    device_id: str
    lo: int
    hi: int
    detected: float
    reported: float | None
    requests: int
    last_request: float | None

    @property
    def missing(self) -> int:
        return self.hi - self.lo + 1


@dataclass(frozen=True, slots=True)
class SequenceUpdate:
    """What tracking one batch's sequence numbers did: holes opened, seqs that filled a hole, reported holes
    (gaps) that are now completely filled."""

    opened: int = 0
    filled: int = 0
    gaps_closed: int = 0

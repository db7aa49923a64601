"""Rows of what devices send: ingest records and dead letters, devices, predictions, stats, annotations, model
events, drift reports and references, events, counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import msgspec
import numpy as np
from numpy.typing import NDArray

from shared.messages import Annotation, Anomaly, ModelEvent, RawWindow, Sample, Stats, Status

DeviceMessage: TypeAlias = Status | Anomaly | Sample | Stats | Annotation | ModelEvent | RawWindow
PredictionKind = Literal["anomaly", "sample"]

DRIFT_EVENT = "drift_detected"
"""The event a drift verdict of ``drift`` records, atomically with its report: the retraining trigger."""

_JSON = msgspec.json.Encoder()


def report_json(value: Mapping[str, Any]) -> str:
    """A drift report (or event payload) as stored JSON text: msgspec's encoder, ~9x `json.dumps` on a report's
    floats (a fleet's drift run stores one report per device). Non-finite floats are written as null, which
    `DriftReport.to_dict` has already made them."""
    return _JSON.encode(value).decode()


def drift_event(report_id: int, scope: str, report: Mapping[str, Any]) -> str:
    """The `DRIFT_EVENT` payload of a stored report, as JSON text; `reference_id` names the stored reference it was
    judged against (None: the manifest's), so a retrain trigger can tell drift judged against a reference an operator
    has since replaced, however close the two writes came."""
    reference = report.get("reference")
    return report_json({"report_id": report_id, "scope": scope, "reason": report.get("reason"),
                        "drifted_features": report.get("drifted_features", []),
                        "reference_id": reference.get("id") if isinstance(reference, Mapping) else None})


SEQUENCE_GAP_EVENT = "sequence_gap"
"""The event a device's skipped sequence numbers record once they outlive the grace period (`hub.delivery`)."""

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


@dataclass(frozen=True)
class FleetQuery:
    """One page of the fleet (by device id), filtered by site and asset type (None: any)."""

    site: str | None = None
    asset_type: str | None = None
    limit: int = 200
    offset: int = 0


@dataclass(frozen=True)
class FleetPage:
    """A page of devices and what the whole filtered fleet adds up to, counted by the store (never every row read).

    `versions`: (model version or None, devices) most first; `open_incidents`: open or acknowledged incidents of
    the page's devices (absent: none); `open_total`: those of the whole filtered fleet; `sites`, `asset_types`:
    of the whole fleet, unfiltered (what a filter can choose)."""

    devices: list[Device]
    total: int
    online: int
    versions: list[tuple[str | None, int]]
    open_incidents: dict[str, int]
    open_total: int
    sites: list[str]
    asset_types: list[str]


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


@dataclass(frozen=True, slots=True, eq=False)
class StatsSum:
    """Stats rows of one device, model version and histogram layout summed (`IngestStore.stats_sums`).

    `layout` is each feature's bin count then the score's (``"10,10;11"``, `hub.store.rollup.layout_of`);
    `counts` the summed bins: every feature's flattened, then the score's.
    """

    device_id: str
    model_version: str | None
    layout: str
    rows: int
    windows: int
    anomalies: int
    counts: NDArray[np.int64]

    @property
    def bins(self) -> tuple[list[int], int]:
        """Each feature's bin count and the score's."""
        return layout_bins(self.layout)


def layout_bins(layout: str) -> tuple[list[int], int]:
    """Each feature's bin count and the score's, from a layout string (``"3,2;2"``)."""
    features, score = layout.split(";")
    return ([int(n) for n in features.split(",")] if features else []), int(score)


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

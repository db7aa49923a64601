"""Message types of the wire contract. Every message has `schema_version` and refuses unknown fields.

The types are msgspec Structs (frozen, keyword-only): decoding checks every field's type and constraints
(`shared.codec`); constructing one runs only the cross-field and finiteness checks of its `__post_init__`
(decoding runs them too). Copy with changes with `shared.wire.replace`, plain data with `shared.wire.to_dict`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared import SCHEMA_VERSION
from shared.ids import new_id
from shared.topics import Kind
from shared.wire import Wire, finite

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DeviceId = Annotated[str, msgspec.Meta(pattern=DEVICE_ID_PATTERN)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Version = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Short = Annotated[str, msgspec.Meta(max_length=64)]
Note = Annotated[str, msgspec.Meta(max_length=2000)]
Positive = Annotated[int, msgspec.Meta(ge=1)]

# Annotation signal types, best signal-to-noise first (DESIGN.md, "Feedback quality").
Signal = Literal["confirmed", "correction", "escalation", "rating", "thumbs", "implicit"]
Label = Literal["fault", "no_fault"]


class Message(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields every device → hub message carries."""

    schema_version: Literal[1] = SCHEMA_VERSION
    msg_id: Id = msgspec.field(default_factory=new_id)
    device_id: DeviceId
    ts: float
    model_version: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    # Per-device sequence number stamped by the agent's outbox when the message first leaves (1, 2, …, never
    # reused, kept across restarts). The hub acknowledges what it stored and asks for gaps (`Command`); None
    # from agents before it and on messages that bypass the outbox (status, last will).
    seq: Positive | None = None

    def __post_init__(self) -> None:
        finite((self.ts,), "ts")


class Status(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retained presence; the broker publishes ``state="offline"`` as the device's last will."""

    state: Literal["online", "offline"]
    agent_version: str | None = None
    shadow_version: str | None = None
    site: Short | None = None
    asset_type: Short | None = None


class Prediction(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A prediction with its feature vector; the body of anomaly and sample messages."""

    trace_id: Id
    window_start: float
    window_end: float
    unit: Short | None = None
    score: Probability
    threshold: Probability
    decision: bool
    features: Annotated[list[float], msgspec.Meta(max_length=4096)]

    def __post_init__(self) -> None:
        finite((self.ts, self.window_start, self.window_end), "ts, window_start and window_end")
        finite(self.features, "features")
        if not (0.0 <= self.score <= 1.0 and 0.0 <= self.threshold <= 1.0):
            raise ValueError("score and threshold lie in [0, 1]")


class Anomaly(Prediction, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A prediction whose score crossed the threshold.

    `sampled`: the window was also drawn into the random baseline slice (every window is drawn with the
    same probability, alarmed or not), so the hub's random slice stays an unbiased sample of traffic.
    """

    sampled: bool = False


class Sample(Prediction, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A prediction sent for labeling: a random slice, a low-confidence one, or one the hub asked for."""

    reason: Literal["random", "low_confidence", "requested"]


class Stats(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Mergeable sketches over one reporting period.

    `feature_hist[i]` counts feature i over the manifest's reference bin edges (len(edges) + 1 bins,
    open-ended at both ends); `score_hist` counts scores over the manifest's score bin edges likewise.
    """

    period_start: float
    period_end: float
    windows: Count
    anomalies: Count
    samples: Count
    bad_readings: Count
    bad_rows: Count
    inference_errors: Count
    nan_scores: Count
    feature_hist: list[list[Count]]
    score_hist: list[Count]
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    # rows the device dropped this period because its disk was full (lowest priority first); 0 when healthy
    storage_dropped: Count = 0

    def __post_init__(self) -> None:
        finite((self.ts, self.period_start, self.period_end, self.latency_p50_ms, self.latency_p99_ms),
               "the times and latencies of stats")


class Annotation(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A technician's label for one trace or for a device's time range."""

    annotation_id: Id = msgspec.field(default_factory=new_id)
    trace_id: Id | None = None
    start_ts: float | None = None
    end_ts: float | None = None
    label: Label
    fault_type: Short | None = None
    technician_id: Id
    confidence: Probability = 1.0
    signal: Signal = "confirmed"
    note: Note | None = None

    def __post_init__(self) -> None:
        finite((self.ts, self.start_ts, self.end_ts), "ts, start_ts and end_ts")
        has_range = self.start_ts is not None and self.end_ts is not None
        if self.trace_id is None and not has_range:
            raise ValueError("an annotation needs a trace_id or both start_ts and end_ts")
        if (self.start_ts is None) != (self.end_ts is None):
            raise ValueError("start_ts and end_ts go together")
        if has_range and self.end_ts < self.start_ts:  # type: ignore[operator]
            raise ValueError("end_ts is before start_ts")


class ModelEvent(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Something happened to a model on the device: loaded, refused, swapped, rolled back…"""

    event: Literal[
        "loaded", "refused", "swapped", "rolled_back", "health_ok", "health_failed", "shadow_report"
    ]
    version: Version
    detail: Note | None = None
    metrics: dict[str, float] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        finite((self.ts, *self.metrics.values()), "ts and metrics")


MAX_WINDOW_VALUES = 8192
"""Numbers a raw window may carry (timestamps and values): as JSON (≤ 24 bytes each) it stays under the payload
limit (`shared.codec`)."""


def window_numbers(sensors: int, readings: int) -> int:
    """How many numbers a raw window of `readings` readings of `sensors` sensors carries (a timestamp each)."""
    return (sensors + 1) * readings if sensors else 0


class RawWindow(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The raw sensor readings behind one prediction, sent when the hub asks (``upload_windows``).

    `values[i]` is sensor `sensors[i]` at each of `timestamps` (oldest first). ``available=False``: the device no
    longer keeps (or never kept) that window; the lists are then empty. Added without a schema bump: a new topic
    kind that only an agent asked by a hub that knows it ever sends.
    """

    trace_id: Id
    unit: Short | None = None
    available: bool = True
    sensors: Annotated[list[Short], msgspec.Meta(max_length=256)] = msgspec.field(default_factory=list)
    timestamps: Annotated[list[float], msgspec.Meta(max_length=MAX_WINDOW_VALUES)] = msgspec.field(
        default_factory=list)
    values: Annotated[list[list[float]], msgspec.Meta(max_length=256)] = msgspec.field(default_factory=list)
    # Feature set 2 (`shared.features.context_features`): the readings the unit's history held before the first of
    # these; the readings then run back past the window's start (up to `shared.history.CONTEXT` more), so the hub can
    # compute the window's features under other regime statistics. None: the readings are the window alone.
    service: Annotated[int, msgspec.Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        finite((self.ts, *self.timestamps), "ts and timestamps")
        if len(self.values) != len(self.sensors) or any(len(v) != len(self.timestamps) for v in self.values):
            raise ValueError("values holds one series per sensor, one value per timestamp")
        if window_numbers(len(self.sensors), len(self.timestamps)) > MAX_WINDOW_VALUES:
            raise ValueError(f"a raw window holds at most {MAX_WINDOW_VALUES} numbers (timestamps and values)")
        if not self.available and self.sensors:
            raise ValueError("an unavailable window carries no readings")
        for series in self.values:
            finite(series, "values")


class Assign(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hub → device (retained): which model version to serve, and how to get and check it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    msg_id: str = msgspec.field(default_factory=new_id)
    ts: float
    version: Version
    mode: Literal["active", "shadow"]
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    signature: str
    url: str
    rollout_id: str | None = None
    # The hub's approval of this assignment for one device (TUF/Uptane-style, `shared.signing.assignment_bytes`):
    # an agent with a pinned key serves nothing whose assignment is not signed, for it, newer than the newest it
    # accepted (`counter`, per device) and not expired. `rollback`: a signed rollback to an older version.
    device_id: DeviceId | None = None
    expires: float | None = None
    counter: Annotated[int, msgspec.Meta(ge=0)] | None = None
    rollback: bool = False
    approval: Annotated[str, msgspec.Meta(max_length=200)] | None = None

    def __post_init__(self) -> None:
        finite((self.ts, self.expires), "ts and expires")


SeqRange = tuple[Positive, Positive]


class Command(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hub → device: a one-off instruction.

    ``ack``: the hub has committed the messages whose `seq` lies in `seq_ranges` (inclusive), so the device may
    drop them from its outbox; ``resend``: the hub is missing them, send them again. ``upload_traces``: send the
    predictions of `trace_ids` and, with `start_ts` and `end_ts`, those whose window ends in that closed range
    that the device did not report when it scored them (the windows a range annotation covers);
    ``upload_windows``: send the raw sensor windows of `trace_ids` (`RawWindow`).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    msg_id: str = msgspec.field(default_factory=new_id)
    ts: float
    cmd: Literal["rollback", "upload_traces", "upload_windows", "ack", "resend"]
    trace_ids: Annotated[list[str], msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)
    seq_ranges: Annotated[list[SeqRange], msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)
    start_ts: float | None = None
    end_ts: float | None = None

    def __post_init__(self) -> None:
        finite((self.ts,), "ts")
        if any(lo > hi for lo, hi in self.seq_ranges):
            raise ValueError("a seq range runs backwards")
        if (self.start_ts is None) != (self.end_ts is None):
            raise ValueError("start_ts and end_ts go together")
        if self.start_ts is not None and self.end_ts is not None:
            finite((self.start_ts, self.end_ts), "start_ts/end_ts")
            if self.end_ts < self.start_ts:
                raise ValueError("end_ts is before start_ts")


MESSAGE_TYPES: dict[Kind, type[Wire]] = {
    Kind.STATUS: Status,
    Kind.ANOMALY: Anomaly,
    Kind.SAMPLE: Sample,
    Kind.STATS: Stats,
    Kind.ANNOTATION: Annotation,
    Kind.MODEL_EVENT: ModelEvent,
    Kind.ASSIGN: Assign,
    Kind.CMD: Command,
    Kind.WINDOW: RawWindow,
}

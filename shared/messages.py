"""Message models of the wire contract. Every message has `schema_version` and refuses unknown fields."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from shared import SCHEMA_VERSION
from shared.ids import new_id
from shared.topics import Kind

DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]

# Annotation signal types, best signal-to-noise first (DESIGN.md, "Feedback quality").
Signal = Literal["confirmed", "correction", "escalation", "rating", "thumbs", "implicit"]
Label = Literal["fault", "no_fault"]


class Message(BaseModel):
    """Fields every device → hub message carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    msg_id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    device_id: DeviceId
    ts: FiniteFloat
    model_version: str | None = Field(default=None, max_length=128)
    # Per-device sequence number stamped by the agent's outbox when the message first leaves (1, 2, …, never
    # reused, kept across restarts). The hub acknowledges what it stored and asks for gaps (`Command`); None
    # from agents before it and on messages that bypass the outbox (status, last will).
    seq: int | None = Field(default=None, ge=1)


class Status(Message):
    """Retained presence; the broker publishes ``state="offline"`` as the device's last will."""

    state: Literal["online", "offline"]
    agent_version: str | None = None
    shadow_version: str | None = None
    site: str | None = Field(default=None, max_length=64)
    asset_type: str | None = Field(default=None, max_length=64)


class Prediction(Message):
    """A prediction with its feature vector; the body of anomaly and sample messages."""

    trace_id: str = Field(min_length=1, max_length=64)
    window_start: FiniteFloat
    window_end: FiniteFloat
    unit: str | None = Field(default=None, max_length=64)
    score: Probability
    threshold: Probability
    decision: bool
    features: list[FiniteFloat] = Field(max_length=4096)


class Anomaly(Prediction):
    """A prediction whose score crossed the threshold.

    `sampled`: the window was also drawn into the random baseline slice (every window is drawn with the
    same probability, alarmed or not), so the hub's random slice stays an unbiased sample of traffic.
    """

    sampled: bool = False


class Sample(Prediction):
    """A prediction sent for labeling: a random slice, a low-confidence one, or one the hub asked for."""

    reason: Literal["random", "low_confidence", "requested"]


class Stats(Message):
    """Mergeable sketches over one reporting period.

    `feature_hist[i]` counts feature i over the manifest's reference bin edges (len(edges) + 1 bins,
    open-ended at both ends); `score_hist` counts scores over the manifest's score bin edges likewise.
    """

    period_start: FiniteFloat
    period_end: FiniteFloat
    windows: Count
    anomalies: Count
    samples: Count
    bad_readings: Count
    bad_rows: Count
    inference_errors: Count
    nan_scores: Count
    feature_hist: list[list[Count]]
    score_hist: list[Count]
    latency_p50_ms: FiniteFloat | None = None
    latency_p99_ms: FiniteFloat | None = None
    # rows the device dropped this period because its disk was full (lowest priority first); 0 when healthy
    storage_dropped: Count = 0


class Annotation(Message):
    """A technician's label for one trace or for a device's time range."""

    annotation_id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    trace_id: str | None = Field(default=None, min_length=1, max_length=64)
    start_ts: FiniteFloat | None = None
    end_ts: FiniteFloat | None = None
    label: Label
    fault_type: str | None = Field(default=None, max_length=64)
    technician_id: str = Field(min_length=1, max_length=64)
    confidence: Probability = 1.0
    signal: Signal = "confirmed"
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _target(self) -> Annotation:
        has_range = self.start_ts is not None and self.end_ts is not None
        if self.trace_id is None and not has_range:
            raise ValueError("an annotation needs a trace_id or both start_ts and end_ts")
        if (self.start_ts is None) != (self.end_ts is None):
            raise ValueError("start_ts and end_ts go together")
        if has_range and self.end_ts < self.start_ts:  # type: ignore[operator]
            raise ValueError("end_ts is before start_ts")
        return self


class ModelEvent(Message):
    """Something happened to a model on the device: loaded, refused, swapped, rolled back…"""

    event: Literal[
        "loaded", "refused", "swapped", "rolled_back", "health_ok", "health_failed", "shadow_report"
    ]
    version: str = Field(min_length=1, max_length=128)
    detail: str | None = Field(default=None, max_length=2000)
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)


class Assign(BaseModel):
    """Hub → device (retained): which model version to serve, and how to get and check it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    msg_id: str = Field(default_factory=new_id)
    ts: FiniteFloat
    version: str = Field(min_length=1, max_length=128)
    mode: Literal["active", "shadow"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str
    url: str
    rollout_id: str | None = None
    # The hub's approval of this assignment for one device (TUF/Uptane-style, `shared.signing.assignment_bytes`):
    # an agent with a pinned key serves nothing whose assignment is not signed, for it, newer than the newest it
    # accepted (`counter`, per device) and not expired. `rollback`: a signed rollback to an older version.
    device_id: DeviceId | None = None
    expires: FiniteFloat | None = None
    counter: int | None = Field(default=None, ge=0)
    rollback: bool = False
    approval: str | None = Field(default=None, max_length=200)


SeqRange = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


class Command(BaseModel):
    """Hub → device: a one-off instruction.

    ``ack``: the hub has committed the messages whose `seq` lies in `seq_ranges` (inclusive), so the device may
    drop them from its outbox; ``resend``: the hub is missing them, send them again. ``upload_traces``: send the
    logged predictions named in `trace_ids` and, with `start_ts` and `end_ts`, those whose window ends in that
    closed range that the device did not report when it scored them (the windows a range annotation covers).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    msg_id: str = Field(default_factory=new_id)
    ts: FiniteFloat
    cmd: Literal["rollback", "upload_traces", "ack", "resend"]
    trace_ids: list[str] = Field(default_factory=list, max_length=10_000)
    seq_ranges: list[SeqRange] = Field(default_factory=list, max_length=10_000)
    start_ts: FiniteFloat | None = None
    end_ts: FiniteFloat | None = None

    @model_validator(mode="after")
    def _ranges(self) -> Command:
        if any(lo > hi for lo, hi in self.seq_ranges):
            raise ValueError("a seq range runs backwards")
        if (self.start_ts is None) != (self.end_ts is None):
            raise ValueError("start_ts and end_ts go together")
        if self.start_ts is not None and self.end_ts is not None and self.end_ts < self.start_ts:
            raise ValueError("end_ts is before start_ts")
        return self


MESSAGE_TYPES: dict[Kind, type[BaseModel]] = {
    Kind.STATUS: Status,
    Kind.ANOMALY: Anomaly,
    Kind.SAMPLE: Sample,
    Kind.STATS: Stats,
    Kind.ANNOTATION: Annotation,
    Kind.MODEL_EVENT: ModelEvent,
    Kind.ASSIGN: Assign,
    Kind.CMD: Command,
}

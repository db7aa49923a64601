"""Inputs and results of the label pipeline: small frozen dataclasses, decoupled from storage and the wire.

Inputs: `AnnotationRecord` (a technician's label, as stored) and `PredictionRef` (what the hub knows about
one prediction). `join` pairs them into `Joined`; `validate` turns a `JoinResult` into a `Validation`,
which accounts for every annotation exactly once: used (in a labelled `TraceOutcome`), pending, or
excluded with an `Exclusion` reason.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from shared.messages import Annotation, Label, Prediction, Signal

Reason = Literal[
    "duplicate",
    "stale",
    "unreliable_annotator",
    "untrainable_signal",
    "conflict_no_consensus",
    "device_mismatch",
    "device_cap",
]
"""Why an annotation (for one trace, or pending) was kept out of the label set."""

REASONS: Final[tuple[Reason, ...]] = get_args(Reason)
Status = Literal["labelled", "conflict", "no_trainable"]
"""A trace's outcome: a trainable consensus, a surfaced conflict, or no trainable annotation at all."""


@dataclass(frozen=True)
class AnnotationRecord:
    """A technician's label for one trace (`trace_id`) or for a device's time range (`start_ts`–`end_ts`).

    `feature_set_version` and `model_family` are markers of what the technician was looking at, when
    known; a marker that differs from the current one makes the label stale.

    >>> AnnotationRecord("a1", "pump-1", "fault", "tech-7", "confirmed", 1.0, 100.0, trace_id="t1").target
    'trace t1'
    """

    annotation_id: str
    device_id: str
    label: Label
    technician_id: str
    signal: Signal
    confidence: float
    created_ts: float
    trace_id: str | None = None
    start_ts: float | None = None
    end_ts: float | None = None
    fault_type: str | None = None
    feature_set_version: int | None = None
    model_family: str | None = None

    def __post_init__(self) -> None:
        if self.label not in get_args(Label):
            raise ValueError(f"{self.annotation_id}: label must be fault or no_fault, got {self.label!r}")
        if self.signal not in get_args(Signal):
            raise ValueError(f"{self.annotation_id}: unknown signal {self.signal!r}")
        if not (math.isfinite(self.confidence) and 0.0 <= self.confidence <= 1.0):
            raise ValueError(f"{self.annotation_id}: confidence must lie in [0, 1], got {self.confidence}")
        if not math.isfinite(self.created_ts):
            raise ValueError(f"{self.annotation_id}: created_ts must be finite")
        if (self.start_ts is None) != (self.end_ts is None):
            raise ValueError(f"{self.annotation_id}: start_ts and end_ts go together")
        if self.trace_id is None and self.start_ts is None:
            raise ValueError(f"{self.annotation_id}: needs a trace_id or a start_ts/end_ts range")
        if self.start_ts is not None and self.end_ts is not None and not self.start_ts <= self.end_ts:
            raise ValueError(f"{self.annotation_id}: end_ts is before start_ts")

    @property
    def target(self) -> str:
        """What the annotation points at, for details and logs: ``trace <id>`` or ``range <a>..<b>``."""
        if self.trace_id is not None:
            return f"trace {self.trace_id}"
        return f"range {self.start_ts}..{self.end_ts}"

    @classmethod
    def from_message(
        cls, message: Annotation, *, feature_set_version: int | None = None, model_family: str | None = None
    ) -> AnnotationRecord:
        """The record of a wire `Annotation`; its ``ts`` is when the technician made it."""
        return cls(
            annotation_id=message.annotation_id,
            device_id=message.device_id,
            label=message.label,
            technician_id=message.technician_id,
            signal=message.signal,
            confidence=message.confidence,
            created_ts=message.ts,
            trace_id=message.trace_id,
            start_ts=message.start_ts,
            end_ts=message.end_ts,
            fault_type=message.fault_type,
            feature_set_version=feature_set_version,
            model_family=model_family,
        )


@dataclass(frozen=True)
class PredictionRef:
    """What the hub knows about one prediction: enough to join, age and group a label."""

    trace_id: str
    device_id: str
    ts: float
    model_version: str | None = None
    feature_set_version: int | None = None
    cohort: str | None = None
    window_end: float | None = None  # the time of the window's last reading; None: taken as `ts`

    @property
    def reading_ts(self) -> float:
        """When the machine was in the state the window shows (a range annotation speaks of that time)."""
        return self.ts if self.window_end is None else self.window_end

    @classmethod
    def from_message(
        cls, message: Prediction, *, feature_set_version: int | None = None, cohort: str | None = None
    ) -> PredictionRef:
        """The reference of a wire `Prediction` (anomaly or sample); the version comes from its manifest."""
        return cls(
            trace_id=message.trace_id,
            device_id=message.device_id,
            ts=message.ts,
            model_version=message.model_version,
            feature_set_version=feature_set_version,
            cohort=cohort,
        )


@dataclass(frozen=True)
class Vote:
    """One annotation's say on one trace: what consensus needs and nothing else."""

    annotation_id: str
    trace_id: str
    technician_id: str
    label: Label
    signal: Signal
    confidence: float


@dataclass(frozen=True)
class Joined:
    """An annotation resolved to one prediction; a range annotation yields one per prediction it covers."""

    annotation: AnnotationRecord
    prediction: PredictionRef
    via: Literal["trace", "range"]

    @property
    def vote(self) -> Vote:
        a = self.annotation
        return Vote(a.annotation_id, self.prediction.trace_id, a.technician_id, a.label, a.signal, a.confidence)


@dataclass(frozen=True)
class Exclusion:
    """Why one annotation, for one trace (``None`` while it has none), is not in the label set."""

    annotation_id: str
    trace_id: str | None
    reason: Reason
    detail: str


@dataclass(frozen=True)
class JoinResult:
    """`join`'s answer: resolved pairs, annotations waiting for their prediction, and refused ones."""

    joined: tuple[Joined, ...]
    pending: tuple[AnnotationRecord, ...]
    rejected: tuple[Exclusion, ...]

    def votes(self, signals: Collection[str] | None = None) -> tuple[Vote, ...]:
        """The joined annotations as votes, optionally only of the given signal kinds.

        What `hub.labels.consensus.annotator_agreement` wants, e.g. ``joined.votes(TRAINABLE_SIGNALS)``.
        """
        return tuple(j.vote for j in self.joined if signals is None or j.annotation.signal in signals)

    @property
    def missing_trace_ids(self) -> tuple[str, ...]:
        """Traces that pending annotations name but the hub has not seen: ask their devices to upload them."""
        return tuple(sorted({a.trace_id for a in self.pending if a.trace_id is not None}))


@dataclass(frozen=True)
class Rules:
    """The parameters `validate` applied: recorded with every label set and part of its fingerprint."""

    rules_version: int
    ttl_s: float
    schema_changed_at: float | None
    feature_set_version: int
    model_family: str | None
    trainable_signals: tuple[Signal, ...]
    unreliable_technicians: tuple[str, ...]
    agreement_threshold: float
    reliability_prior_mean: float
    reliability_prior_strength: float
    signal_weights: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules_version": self.rules_version,
            "ttl_s": self.ttl_s,
            "schema_changed_at": self.schema_changed_at,
            "feature_set_version": self.feature_set_version,
            "model_family": self.model_family,
            "trainable_signals": list(self.trainable_signals),
            "unreliable_technicians": list(self.unreliable_technicians),
            "agreement_threshold": self.agreement_threshold,
            "reliability_prior_mean": self.reliability_prior_mean,
            "reliability_prior_strength": self.reliability_prior_strength,
            "signal_weights": dict(self.signal_weights),
        }


@dataclass(frozen=True)
class TraceOutcome:
    """What the annotations of one trace came to.

    `annotation_ids` are the votes that reached consensus (all of them used when ``labelled``, all of
    them excluded as ``conflict_no_consensus`` when ``conflict``). `weight_fault`/`weight_no_fault` are
    vote weights (signal × confidence × reliability); `weight` is the training weight of a labelled trace
    (label confidence × the best agreeing signal × confidence), else 0. `reported_*` count the thumbs-style
    annotations, which are shown but never vote.
    """

    trace_id: str
    device_id: str
    cohort: str | None
    model_version: str | None
    status: Status
    label: Label | None
    confidence: float
    weight: float
    weight_fault: float
    weight_no_fault: float
    annotation_ids: tuple[str, ...]
    reported_fault: int
    reported_no_fault: int


@dataclass(frozen=True)
class Validation:
    """Every annotation accounted for: labelled/conflicting/empty trace outcomes, pending, and exclusions."""

    now: float
    rules: Rules
    outcomes: tuple[TraceOutcome, ...]
    pending: tuple[AnnotationRecord, ...]
    exclusions: tuple[Exclusion, ...]

    @property
    def labelled(self) -> tuple[TraceOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "labelled")

    @property
    def conflicts(self) -> tuple[TraceOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "conflict")

    @property
    def used(self) -> frozenset[tuple[str, str]]:
        """The (annotation_id, trace_id) pairs behind labelled traces."""
        return frozenset((a, o.trace_id) for o in self.labelled for a in o.annotation_ids)

    def exclusion_counts(self) -> dict[str, int]:
        """Exclusions per reason (every reason present, zeros included), counted per (annotation, trace)."""
        counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        for exclusion in self.exclusions:
            counts[exclusion.reason] += 1
        return counts

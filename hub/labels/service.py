"""The label pipeline on the hub store: load annotations and predictions, join, validate, save label sets.

`hub.labels` is pure; this module is the thin layer that feeds it from a `HubStore` and persists what it
returns, so the API (and later a scheduled job) run the same code. Time is passed in (``now``), never read.
It also picks what technicians should label next (`labeling_queue`): anomalies, low-confidence samples
and a random baseline slice without an annotation yet (DESIGN.md, "Feedback quality"), in the order of their
reason, or (``queue_policy = "select"``) as the label-selection policy ranks them under a budget
(`hub.labels.selection`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.labels import (
    TRAINABLE_SIGNALS,
    AnnotationRecord,
    CohortShare,
    JoinResult,
    LabelSet,
    PredictionRef,
    TraceOutcome,
    Validation,
    annotator_agreement,
    build_label_set,
    flagged,
    join,
    max_cohort_share,
    validate,
)
from hub.labels.attribution import MAX_PER_DEVICE, cap_device_votes
from hub.labels.consensus import AGREEMENT_THRESHOLD, FLAG_BELOW, MIN_COMPARED
from hub.labels.join import contested
from hub.labels.labelset import MAX_COHORT_SHARE
from hub.labels.selection import RANDOM_SHARE, Candidate, PickReason, budget_for, select
from hub.labels.signals import trainable_signals
from hub.store.ports import HubStore
from hub.store.rows import (
    AnnotationRow,
    ExclusionRow,
    LabelItemRow,
    LabelSetRow,
    MissingTrace,
    PredictionRow,
    QueueReason,
)
from shared.messages import Signal

QUEUE_ORDER: tuple[QueueReason, ...] = ("anomaly", "low_confidence", "random")
"""Labeling priority: anomalies, then predictions near the threshold, then the random baseline slice."""


class LabelSettings(BaseModel):
    """How the hub validates labels and fills the labeling queue (proposed as ``HubSettings.labels``)."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: float = Field(
        default=90 * 86400.0, gt=0, allow_inf_nan=False,
        description="labels (and pending annotations, and queue candidates) older than this are stale",
    )
    schema_changed_at: float | None = Field(
        default=None, allow_inf_nan=False, description="unix time of the last feature-schema/model-family change"
    )
    model_family: str | None = Field(default=None, description="current model family; other families are stale")
    agreement_threshold: float = Field(default=AGREEMENT_THRESHOLD, ge=0.5, le=1.0)
    trainable_signals: tuple[Signal, ...] = Field(default=tuple(sorted(TRAINABLE_SIGNALS)))
    flag_below: float = Field(default=FLAG_BELOW, ge=0.0, le=1.0, description="annotator agreement flag level")
    min_compared: int = Field(default=MIN_COMPARED, ge=1, description="comparisons before a technician is flagged")
    max_cohort_share: float = Field(default=MAX_COHORT_SHARE, gt=0.0, le=1.0)
    max_device_votes: int = Field(default=MAX_PER_DEVICE, ge=0, description="device-sent (MQTT) annotations "
                                  "of one device that may enter a label set, oldest first, a range annotation with "
                                  "every window it covers (hub.labels.attribution)")

    queue_policy: Literal["reason", "select"] = Field(
        default="reason", description="how the labeling queue ranks: by reason (anomalies, then low confidence, "
        "then the random slice), or by the label-selection policy (hub.labels.selection: a seeded random share kept "
        "for unbiased estimates, then device and cohort in turn, closest to the threshold first) under queue_budget")
    queue_budget: float = Field(
        default=1.0, gt=0.0, le=1.0, description="with queue_policy select: the share of the unlabelled candidates "
        "(anomalies, low-confidence and random samples within the TTL) the queue offers technicians")
    queue_random_share: float = Field(default=RANDOM_SHARE, ge=0.0, le=1.0, description="with queue_policy "
                                      "select: the share of the queue drawn at random (recorded as pick=random)")
    queue_pool: int = Field(default=5000, ge=1, description="with queue_policy select: the most candidates of each "
                            "reason the policy ranks")

    @field_validator("trainable_signals")
    @classmethod
    def _trainable(cls, value: tuple[Signal, ...]) -> tuple[Signal, ...]:
        return tuple(sorted(trainable_signals(value)))  # refuses thumbs-style kinds


# --- store rows → pure inputs ---------------------------------------------------------------------


def annotation_record(row: AnnotationRow) -> AnnotationRecord:
    """The label pipeline's view of a stored annotation (its ``ts`` is when the technician made it)."""
    return AnnotationRecord(
        annotation_id=row.annotation_id,
        device_id=row.device_id,
        label=row.label,  # type: ignore[arg-type]  # checked by AnnotationRecord
        technician_id=row.technician_id,
        signal=row.signal,  # type: ignore[arg-type]
        confidence=row.confidence,
        created_ts=row.ts,
        trace_id=row.trace_id,
        start_ts=row.start_ts,
        end_ts=row.end_ts,
        fault_type=row.fault_type,
    )


def prediction_ref(row: PredictionRow, cohorts: Mapping[str, str | None]) -> PredictionRef:
    return PredictionRef(row.trace_id, row.device_id, row.ts, row.model_version, cohort=cohorts.get(row.device_id),
                         window_end=row.window_end)


RANGE_SCORING_LAG_S = 3600.0
"""How far apart a window's scoring time and its last reading's time may be and the window still be found by a
range annotation over the readings' time (a gateway catching up on a backlog scores late; a sensor feed may stamp
readings on its own clock)."""


def range_predictions(store: HubStore, device_id: str, start_ts: float, end_ts: float) -> list[PredictionRow]:
    """Predictions of a device whose window ends in ``[start_ts, end_ts]`` (the join's closed range, on the
    machine's time), scored within `RANGE_SCORING_LAG_S` of their last reading."""
    rows = store.predictions(start_ts - RANGE_SCORING_LAG_S, math.nextafter(end_ts + RANGE_SCORING_LAG_S, math.inf),
                             device_ids=[device_id])
    return [r for r in rows if start_ts <= r.window_end <= end_ts]


@dataclass(frozen=True)
class LabelRun:
    """One pass of the pipeline over the store: every input and every result, nothing persisted yet."""

    annotations: dict[str, AnnotationRow]
    joined: JoinResult
    unreliable: frozenset[str]
    validation: Validation
    label_set: LabelSet
    cohort_share: CohortShare

    def summary(self) -> dict[str, Any]:
        """`LabelSet.to_dict` plus the conflicts, the cohort check and who was flagged: what is stored."""
        share = self.cohort_share
        return {
            **self.label_set.to_dict(),
            "n_annotations": len(self.annotations),
            "conflicts": [_conflict_dict(o) for o in self.validation.conflicts],
            "cohort_share": {"cohort": share.cohort, "share": share.share, "limit": share.limit, "by": share.by,
                             "ok": share.ok},
            "unreliable_technicians": sorted(self.unreliable),
            "missing_trace_ids": len(self.joined.missing_trace_ids),
        }


def _conflict_dict(o: TraceOutcome) -> dict[str, Any]:
    return {"trace_id": o.trace_id, "device_id": o.device_id, "confidence": o.confidence,
            "weight_fault": o.weight_fault, "weight_no_fault": o.weight_no_fault,
            "annotation_ids": list(o.annotation_ids)}


def load_join(store: HubStore) -> tuple[dict[str, AnnotationRow], JoinResult]:
    """Every stored annotation joined with the stored predictions it names (by trace or device range)."""
    rows = {r.annotation_id: r for r in store.annotations()}
    predictions: dict[str, PredictionRow] = {}
    trace_ids = sorted({r.trace_id for r in rows.values() if r.trace_id is not None})
    for p in store.predictions_by_trace(trace_ids):
        predictions[p.trace_id] = p
    for r in rows.values():
        if r.trace_id is None and r.start_ts is not None and r.end_ts is not None:
            for p in range_predictions(store, r.device_id, r.start_ts, r.end_ts):
                predictions[p.trace_id] = p
    cohorts = {d.device_id: d.cohort for d in store.devices()}
    refs = [prediction_ref(p, cohorts) for p in predictions.values()]
    return rows, join((annotation_record(r) for r in rows.values()), refs)


def load_votes(store: HubStore, settings: LabelSettings) -> tuple[dict[str, AnnotationRow], JoinResult]:
    """`load_join` with each device's own votes capped at `settings.max_device_votes`."""
    rows, joined = load_join(store)
    return rows, cap_device_votes(joined, settings.max_device_votes)


def run_labels(store: HubStore, settings: LabelSettings, *, now: float) -> LabelRun:
    """Join, flag unreliable annotators, validate and build the label set (nothing is written)."""
    rows, joined = load_votes(store, settings)
    agreement = annotator_agreement(
        joined.votes(settings.trainable_signals), threshold=settings.agreement_threshold,
        flag_below=settings.flag_below, min_compared=settings.min_compared,
    )
    unreliable = flagged(agreement)
    validation = validate(
        joined, now=now, ttl_s=settings.ttl_s, schema_changed_at=settings.schema_changed_at,
        unreliable_technicians=unreliable, trainable_signals=settings.trainable_signals,
        agreement_threshold=settings.agreement_threshold, model_family=settings.model_family,
    )
    label_set = build_label_set(validation, created_ts=now)
    share = max_cohort_share(label_set, limit=settings.max_cohort_share)
    return LabelRun(rows, joined, unreliable, validation, label_set, share)


@dataclass(frozen=True)
class SavedLabelSet:
    row: LabelSetRow
    created: bool  # False: a label set with this content and rules was stored before (same id)


def validate_and_save(store: HubStore, settings: LabelSettings, *, now: float) -> SavedLabelSet:
    """`run_labels` and persist the label set, its items and every exclusion; the id is content-addressed."""
    run = run_labels(store, settings, now=now)
    ls = run.label_set
    created = store.label_set(ls.id) is None
    items = [
        LabelItemRow(i.trace_id, i.device_id, i.label, i.weight, i.confidence, i.n_annotations, i.cohort,
                     i.model_version)
        for i in ls.items
    ]
    exclusions = [ExclusionRow(e.annotation_id, e.trace_id, e.reason, e.detail) for e in run.validation.exclusions]
    label_set_id = store.save_label_set(run.summary(), items, exclusions, ts=now)
    row = store.label_set(label_set_id)
    assert row is not None  # just written
    return SavedLabelSet(row, created)


@dataclass(frozen=True)
class Conflict:
    outcome: TraceOutcome
    votes: tuple[AnnotationRow, ...]


def conflicts(
    store: HubStore, settings: LabelSettings, *, now: float, limit: int | None = None, offset: int = 0
) -> list[Conflict]:
    """Traces whose trainable votes reach no consensus right now, with the annotations that voted, by trace id
    (`offset` and `limit` page through them).

    The same verdicts as `run_labels`, computed over the contested traces only (`hub.labels.join.contested`).
    """
    rows, joined = load_votes(store, settings)
    joined = contested(joined)
    agreement = annotator_agreement(
        joined.votes(settings.trainable_signals), threshold=settings.agreement_threshold,
        flag_below=settings.flag_below, min_compared=settings.min_compared,
    )
    validation = validate(
        joined, now=now, ttl_s=settings.ttl_s, schema_changed_at=settings.schema_changed_at,
        unreliable_technicians=flagged(agreement), trainable_signals=settings.trainable_signals,
        agreement_threshold=settings.agreement_threshold, model_family=settings.model_family,
    )
    found = validation.conflicts[offset:None if limit is None else offset + limit]
    return [Conflict(o, tuple(rows[a] for a in o.annotation_ids if a in rows)) for o in found]


def missing_traces(
    store: HubStore, settings: LabelSettings, *, now: float, device_id: str | None = None, limit: int | None = None
) -> list[MissingTrace]:
    """Traces that annotations within the TTL name but the hub has not seen: ask their devices to upload them."""
    return store.missing_traces(since=now - settings.ttl_s, device_id=device_id, limit=limit)


# --- the labeling queue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    reason: QueueReason
    prediction: PredictionRow
    pick: PickReason | None = None  # why the label-selection policy picked it (queue_policy select)


def queue_reason(p: PredictionRow) -> QueueReason | None:
    """Why a prediction belongs in the queue: an anomaly, a low-confidence or a random sample; else None."""
    if p.kind == "anomaly":
        return "anomaly"
    if p.reason in ("low_confidence", "random"):
        return p.reason  # type: ignore[return-value]
    return None


def _priority(entry: QueueEntry) -> tuple[Any, ...]:
    p = entry.prediction
    rank = QUEUE_ORDER.index(entry.reason)
    if entry.reason == "anomaly":
        return (rank, -p.score, -p.ts, p.trace_id)
    if entry.reason == "low_confidence":
        return (rank, abs(p.score - p.threshold), -p.ts, p.trace_id)
    return (rank, 0.0, -p.ts, p.trace_id)


def prioritise(predictions: Iterable[PredictionRow], limit: int) -> list[QueueEntry]:
    """The labeling queue order: anomalies by score (highest first), then low-confidence samples by distance
    to the threshold (closest first), then the random slice (newest first); others are left out.

    >>> from hub.store.rows import PredictionRow
    >>> def p(t, kind, score, reason=None):
    ...     return PredictionRow(t, t, kind, "d", 0.0, 0.0, None, None, 0.0, 0.0, score, 0.5, score > 0.5, reason, ())
    >>> rows = [p("r", "sample", 0.1, "random"), p("l", "sample", 0.45, "low_confidence"), p("a", "anomaly", 0.7),
    ...         p("b", "anomaly", 0.9), p("q", "sample", 0.5, "requested")]
    >>> [(e.prediction.trace_id, e.reason) for e in prioritise(rows, 10)]
    [('b', 'anomaly'), ('a', 'anomaly'), ('l', 'low_confidence'), ('r', 'random')]
    """
    entries = []
    for p in predictions:
        reason = queue_reason(p)
        if reason is not None:
            entries.append(QueueEntry(reason, p))
    return sorted(entries, key=_priority)[:limit]


def labeling_queue(
    store: HubStore, settings: LabelSettings, *, now: float, limit: int, device_id: str | None = None,
    since: float | None = None,
) -> list[QueueEntry]:
    """Unannotated predictions within the TTL (and made at ``ts >= since``), in `prioritise` order, at most `limit`;
    with ``queue_policy = "select"``, as `select_queue` ranks them."""
    oldest = now - settings.ttl_s if since is None else max(since, now - settings.ttl_s)
    if settings.queue_policy == "select":
        pool = [p for reason in QUEUE_ORDER
                for p in store.unlabelled_predictions(reason, since=oldest, device_id=device_id,
                                                      limit=settings.queue_pool)]
        cohorts = {d.device_id: d.cohort for d in store.devices()}
        return select_queue(pool, cohorts, settings, limit=limit)
    candidates: list[PredictionRow] = []
    for reason in QUEUE_ORDER:
        if len(candidates) >= limit:
            break  # earlier groups fill the queue: later ones would be cut anyway
        candidates.extend(
            store.unlabelled_predictions(reason, since=oldest, device_id=device_id, limit=limit)
        )
    return prioritise(candidates, limit)


def select_queue(pool: Sequence[PredictionRow], cohorts: Mapping[str, str | None], settings: LabelSettings, *,
                 limit: int) -> list[QueueEntry]:
    """The top of `pool` by the label-selection policy, at most ``queue_budget`` of it and `limit` (seeded by the
    pool itself, so the same pool gives the same queue)."""
    entries = {p.trace_id: QueueEntry(reason, p) for p in pool if (reason := queue_reason(p)) is not None}
    candidates = [Candidate(e.prediction.trace_id, e.prediction.score, e.prediction.threshold, e.prediction.device_id,
                            e.prediction.ts, cohort=cohorts.get(e.prediction.device_id))
                  for e in entries.values()]
    budget = min(limit, budget_for(settings.queue_budget, len(candidates)))
    seed = min(entries, default="")
    picks = select(candidates, budget, seed=seed, random_share=settings.queue_random_share)
    return [QueueEntry(entries[p.candidate.key].reason, entries[p.candidate.key].prediction, p.reason) for p in picks]


def annotation_status(
    store: HubStore, rows: Sequence[AnnotationRow]
) -> dict[str, Literal["joined", "pending", "device_mismatch"]]:
    """Whether each annotation has found its prediction(s) yet, by annotation_id."""
    traces = {p.trace_id: p for p in store.predictions_by_trace(sorted({r.trace_id for r in rows if r.trace_id}))}
    status: dict[str, Literal["joined", "pending", "device_mismatch"]] = {}
    for r in rows:
        if r.trace_id is not None:
            p = traces.get(r.trace_id)
            status[r.annotation_id] = (
                "pending" if p is None else "joined" if p.device_id == r.device_id else "device_mismatch"
            )
        else:
            assert r.start_ts is not None and r.end_ts is not None  # a range annotation
            found = range_predictions(store, r.device_id, r.start_ts, r.end_ts)
            status[r.annotation_id] = "joined" if found else "pending"
    return status

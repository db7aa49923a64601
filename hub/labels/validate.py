"""Validate joined annotations before training, recording why each one left (DESIGN.md, "Feedback quality").

Each (annotation, trace) pair is screened in this order and takes the first reason that applies:

1. ``untrainable_signal``: thumbs-style kinds (never trainable) or kinds the caller left out. They are
   still *reported*: counted per trace and label in `TraceOutcome.reported_fault`/``reported_no_fault``.
2. ``stale``: the label is older than the TTL, or older than the last feature-schema / model-family
   change, or carries a feature-set version or model family other than the current one. A label is as
   old as the older of its evidence (the prediction's ``ts``) and its verdict (the annotation's
   ``created_ts``): features recorded under an old schema stay old however late they are labelled.
3. ``unreliable_annotator``: the technician is flagged (see `hub.labels.consensus.annotator_agreement`).
4. ``duplicate``: same technician, same trace, same label as an earlier surviving annotation (earliest
   ``created_ts`` wins, then the smaller annotation_id); screened last so that a thumbs or stale copy
   never knocks out a good one.
5. ``conflict_no_consensus``: the surviving votes of the trace do not reach the agreement threshold;
   all of them are excluded and the trace is surfaced as a conflict.

Pending annotations stay pending until ``now - created_ts`` exceeds the TTL, then become ``stale``;
``device_mismatch`` rejections from `join` are carried over. Nothing is silently dropped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable

from hub.labels.consensus import AGREEMENT_THRESHOLD, DEFAULT_PRIOR, Consensus, ReliabilityPrior, consensus
from hub.labels.signals import SIGNAL_WEIGHTS, TRAINABLE_SIGNALS, UNTRAINABLE_SIGNALS, signal_weight
from hub.labels.signals import trainable_signals as check_trainable
from hub.labels.types import (
    AnnotationRecord,
    Exclusion,
    Joined,
    JoinResult,
    Reason,
    Rules,
    TraceOutcome,
    Validation,
)
from shared.features import FEATURE_SET_VERSION

RULES_VERSION = 1
"""Bump when the meaning of the rules changes: it is part of every label set's fingerprint."""


def _stale(j: Joined, rules: Rules, now: float) -> str | None:
    a, p = j.annotation, j.prediction
    observed = min(a.created_ts, p.ts)
    if now - observed > rules.ttl_s:
        return f"{now - observed:.0f} s old > ttl {rules.ttl_s:.0f} s"
    if rules.schema_changed_at is not None and observed < rules.schema_changed_at:
        return f"from {observed:.0f}, before the schema/model-family change at {rules.schema_changed_at:.0f}"
    for who, version in (("prediction", p.feature_set_version), ("annotation", a.feature_set_version)):
        if version is not None and version != rules.feature_set_version:
            return f"{who} feature_set_version {version} != current {rules.feature_set_version}"
    if rules.model_family is not None and a.model_family is not None and a.model_family != rules.model_family:
        return f"model family {a.model_family} != current {rules.model_family}"
    return None


def _screen(j: Joined, rules: Rules, now: float) -> tuple[Reason, str] | None:
    a = j.annotation
    if a.signal in UNTRAINABLE_SIGNALS:
        return "untrainable_signal", f"{a.signal} is never trained on; reported only"
    if a.signal not in rules.trainable_signals:
        return "untrainable_signal", f"{a.signal} is not trainable under these rules"
    stale = _stale(j, rules, now)
    if stale is not None:
        return "stale", stale
    if a.technician_id in rules.unreliable_technicians:
        return "unreliable_annotator", f"technician {a.technician_id} is flagged unreliable"
    return None


def _conflict_detail(c: Consensus, threshold: float) -> str:
    if c.weight_fault + c.weight_no_fault == 0.0:
        return "no weight: every vote has confidence 0"
    return (
        f"fault {c.weight_fault:.3f} vs no_fault {c.weight_no_fault:.3f}: "
        f"winning share {c.confidence:.3f} below {threshold}"
    )


def _outcome(
    trace_pairs: list[Joined], survivors: list[Joined], c: Consensus | None, reported: dict[str, int]
) -> TraceOutcome:
    p = trace_pairs[0].prediction
    label = c.label if c is not None else None
    weight = 0.0
    if c is not None and label is not None:
        best = max(
            signal_weight(j.annotation.signal) * j.annotation.confidence
            for j in survivors
            if j.annotation.label == label
        )
        weight = c.confidence * best
    return TraceOutcome(
        trace_id=p.trace_id,
        device_id=p.device_id,
        cohort=p.cohort,
        model_version=p.model_version,
        status="no_trainable" if c is None else ("conflict" if label is None else "labelled"),
        label=label,
        confidence=c.confidence if c is not None else 0.0,
        weight=weight,
        weight_fault=c.weight_fault if c is not None else 0.0,
        weight_no_fault=c.weight_no_fault if c is not None else 0.0,
        annotation_ids=tuple(sorted(j.annotation.annotation_id for j in survivors)),
        reported_fault=reported["fault"],
        reported_no_fault=reported["no_fault"],
    )


def validate(
    joined: JoinResult,
    *,
    now: float,
    ttl_s: float,
    schema_changed_at: float | None = None,
    unreliable_technicians: Collection[str] = frozenset(),
    trainable_signals: Iterable[str] = TRAINABLE_SIGNALS,
    agreement_threshold: float = AGREEMENT_THRESHOLD,
    feature_set_version: int = FEATURE_SET_VERSION,
    model_family: str | None = None,
    prior: ReliabilityPrior = DEFAULT_PRIOR,
) -> Validation:
    """Screen, deduplicate and vote: a per-trace outcome and a reason for every exclusion.

    Parameters
    ----------
    joined : JoinResult
        What `join` returned.
    now : float
        The current time (unix seconds); passed in, never read from a clock.
    ttl_s : float
        Labels (and pending annotations) older than this many seconds are stale.
    schema_changed_at : float, optional
        Time of the last feature-schema or model-family change; anything observed before it is stale.
    unreliable_technicians : collection of str
        Technicians whose annotations are excluded.
    trainable_signals : iterable of str
        Kinds allowed to vote; thumbs and implicit are refused (`ValueError`), whatever is asked.
    agreement_threshold : float
        Winning weight share needed for consensus, in [0.5, 1].
    feature_set_version, model_family : optional
        The current markers; a label carrying another one is stale.
    prior : ReliabilityPrior
        Prior of the annotator reliability that weighs each vote.

    Examples
    --------
    >>> from hub.labels.join import join
    >>> from hub.labels.types import PredictionRef
    >>> p = [PredictionRef("t1", "pump-1", 1_000.0)]
    >>> a = [
    ...     AnnotationRecord("a1", "pump-1", "fault", "ann", "confirmed", 1.0, 1_100.0, trace_id="t1"),
    ...     AnnotationRecord("a2", "pump-1", "fault", "ann", "confirmed", 1.0, 1_200.0, trace_id="t1"),
    ...     AnnotationRecord("a3", "pump-1", "no_fault", "bob", "thumbs", 1.0, 1_300.0, trace_id="t1"),
    ... ]
    >>> v = validate(join(a, p), now=2_000.0, ttl_s=86_400.0)
    >>> [(o.trace_id, o.status, o.label, o.confidence, o.annotation_ids, o.reported_no_fault) for o in v.outcomes]
    [('t1', 'labelled', 'fault', 1.0, ('a1',), 1)]
    >>> [(e.annotation_id, e.reason) for e in v.exclusions]
    [('a2', 'duplicate'), ('a3', 'untrainable_signal')]
    """
    if not (math.isfinite(ttl_s) and ttl_s > 0.0):
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    if not math.isfinite(now):
        raise ValueError("now must be finite")
    if not 0.5 <= agreement_threshold <= 1.0:
        raise ValueError(f"agreement_threshold must lie in [0.5, 1], got {agreement_threshold}")
    rules = Rules(
        rules_version=RULES_VERSION,
        ttl_s=ttl_s,
        schema_changed_at=schema_changed_at,
        feature_set_version=feature_set_version,
        model_family=model_family,
        trainable_signals=tuple(sorted(check_trainable(trainable_signals))),
        unreliable_technicians=tuple(sorted(set(unreliable_technicians))),
        agreement_threshold=agreement_threshold,
        reliability_prior_mean=prior.mean,
        reliability_prior_strength=prior.strength,
        signal_weights=tuple(SIGNAL_WEIGHTS.items()),
    )
    exclusions: list[Exclusion] = list(joined.rejected)
    pending: list[AnnotationRecord] = []
    for a in joined.pending:
        if now - a.created_ts > ttl_s:
            detail = f"pending {now - a.created_ts:.0f} s > ttl {ttl_s:.0f} s: its prediction never arrived"
            exclusions.append(Exclusion(a.annotation_id, a.trace_id, "stale", detail))
        else:
            pending.append(a)

    by_trace: dict[str, list[Joined]] = defaultdict(list)
    survivors: dict[str, list[Joined]] = defaultdict(list)
    reported: dict[str, dict[str, int]] = defaultdict(lambda: {"fault": 0, "no_fault": 0})
    first: dict[tuple[str, str, str], str] = {}
    order = sorted(
        joined.joined, key=lambda j: (j.annotation.created_ts, j.annotation.annotation_id, j.prediction.trace_id)
    )
    for j in order:
        a, trace_id = j.annotation, j.prediction.trace_id
        by_trace[trace_id].append(j)
        screened = _screen(j, rules, now)
        if screened is not None:
            reason, detail = screened
            if reason == "untrainable_signal":
                reported[trace_id][a.label] += 1
            exclusions.append(Exclusion(a.annotation_id, trace_id, reason, detail))
            continue
        key = (a.technician_id, trace_id, a.label)
        if key in first:
            detail = f"{a.technician_id} already labelled {trace_id} {a.label} in {first[key]}"
            exclusions.append(Exclusion(a.annotation_id, trace_id, "duplicate", detail))
            continue
        first[key] = a.annotation_id
        survivors[trace_id].append(j)

    votes = [j.vote for pairs in survivors.values() for j in pairs]
    verdicts = consensus(votes, threshold=agreement_threshold, prior=prior)
    outcomes = []
    for trace_id in sorted(by_trace):
        c = verdicts.get(trace_id)
        if c is not None and c.conflict:
            detail = _conflict_detail(c, agreement_threshold)
            exclusions.extend(
                Exclusion(j.annotation.annotation_id, trace_id, "conflict_no_consensus", detail)
                for j in survivors[trace_id]
            )
        outcomes.append(_outcome(by_trace[trace_id], survivors[trace_id], c, reported[trace_id]))
    exclusions.sort(key=lambda e: (e.annotation_id, e.trace_id or "", e.reason))
    return Validation(
        now=now, rules=rules, outcomes=tuple(outcomes), pending=tuple(pending), exclusions=tuple(exclusions)
    )

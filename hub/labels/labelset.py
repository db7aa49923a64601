"""Versioned label sets: what a training run used, named by a fingerprint of its content and its rules.

The fingerprint is the sha256 of canonical JSON over the sorted ``(trace_id, label, weight)`` tuples and
the validation rules (`Rules.to_dict`); the build time and ``now`` are left out, so rebuilding the same
labels under the same rules gives the same fingerprint, and the id (``ls-`` + its first 16 hex digits)
is content-addressed. Item weights are rounded to 12 significant digits (so ``0.30000000000000004`` is
written ``0.3``, and a tiny weight stays positive); summaries round totals to 6 decimals.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from hub.labels.types import Rules, Validation

WEIGHT_DIGITS = 12
"""Significant digits of an item's weight."""
SUMMARY_DECIMALS = 6
UNKNOWN_COHORT = "unknown"
"""Where labels of predictions without a cohort are counted."""
MAX_COHORT_SHARE = 0.5
"""Default limit for `max_cohort_share`: no cohort (site, asset type) holds a majority of the labels."""


@dataclass(frozen=True)
class LabelItem:
    """One training label: 1 for fault, 0 for no fault, with its training weight in (0, 1]."""

    trace_id: str
    device_id: str
    label: int
    weight: float
    confidence: float
    n_annotations: int
    cohort: str | None
    model_version: str | None


@dataclass(frozen=True)
class CohortStats:
    """Labels of one cohort in a label set."""

    n: int
    n_fault: int
    weight: float


@dataclass(frozen=True)
class CohortShare:
    """The largest cohort's share of a label set, and whether it stays within `limit`."""

    cohort: str | None
    share: float
    limit: float
    by: Literal["weight", "count"]
    ok: bool


@dataclass(frozen=True)
class LabelSet:
    """A versioned, fingerprinted set of training labels and the account of what was left out.

    `exclusions` counts exclusions per reason (per (annotation, trace) pair; every reason listed);
    `reported_fault`/`reported_no_fault` count thumbs-style annotations on the traces, never trained on.
    """

    id: str
    fingerprint: str
    created_ts: float
    rules: Rules
    items: tuple[LabelItem, ...]
    exclusions: tuple[tuple[str, int], ...]
    n_pending: int
    n_conflicts: int
    reported_fault: int
    reported_no_fault: int

    def cohorts(self) -> dict[str, CohortStats]:
        """Count, faults and total weight per cohort (sorted; a missing cohort counts as ``unknown``)."""
        grouped: dict[str, list[LabelItem]] = {}
        for item in self.items:
            grouped.setdefault(item.cohort or UNKNOWN_COHORT, []).append(item)
        return {
            cohort: CohortStats(len(items), sum(i.label for i in items), _fsum_rounded(i.weight for i in items))
            for cohort, items in sorted(grouped.items())
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no items): counts per label, cohort and exclusion reason, and the rules."""
        n_fault = sum(i.label for i in self.items)
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "created_ts": self.created_ts,
            "n_items": len(self.items),
            "n_fault": n_fault,
            "n_no_fault": len(self.items) - n_fault,
            "total_weight": _fsum_rounded(i.weight for i in self.items),
            "cohorts": {c: {"n": s.n, "n_fault": s.n_fault, "weight": s.weight} for c, s in self.cohorts().items()},
            "excluded": dict(self.exclusions),
            "n_excluded": sum(n for _, n in self.exclusions),
            "n_pending": self.n_pending,
            "n_conflicts": self.n_conflicts,
            "reported_untrainable": {"fault": self.reported_fault, "no_fault": self.reported_no_fault},
            "rules": self.rules.to_dict(),
        }


def _fsum_rounded(values: Iterable[float]) -> float:
    return round(math.fsum(values), SUMMARY_DECIMALS)


def fingerprint(items: Iterable[LabelItem], rules: Rules) -> str:
    """sha256 (hex) over the sorted ``(trace_id, label, weight)`` tuples and the rules."""
    rows = sorted((i.trace_id, i.label, i.weight) for i in items)
    payload = json.dumps({"items": rows, "rules": rules.to_dict()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def build_label_set(validated: Validation, *, created_ts: float) -> LabelSet:
    """The label set of a validation: one item per labelled trace, sorted by trace_id.

    Examples
    --------
    >>> from hub.labels.join import join
    >>> from hub.labels.types import AnnotationRecord, PredictionRef
    >>> from hub.labels.validate import validate
    >>> p = [PredictionRef("t1", "pump-1", 1_000.0, cohort="site-a")]
    >>> a = [AnnotationRecord("a1", "pump-1", "fault", "ann", "escalation", 0.5, 1_100.0, trace_id="t1")]
    >>> ls = build_label_set(validate(join(a, p), now=2_000.0, ttl_s=86_400.0), created_ts=2_000.0)
    >>> [(i.trace_id, i.label, i.weight, i.n_annotations, i.cohort) for i in ls.items]
    [('t1', 1, 0.2, 1, 'site-a')]
    >>> ls.id == "ls-" + ls.fingerprint[:16], ls.to_dict()["cohorts"]
    (True, {'site-a': {'n': 1, 'n_fault': 1, 'weight': 0.2}})
    """
    items = tuple(
        LabelItem(
            trace_id=o.trace_id,
            device_id=o.device_id,
            label=1 if o.label == "fault" else 0,
            weight=float(f"{o.weight:.{WEIGHT_DIGITS}g}"),
            confidence=o.confidence,
            n_annotations=len(o.annotation_ids),
            cohort=o.cohort,
            model_version=o.model_version,
        )
        for o in validated.labelled
    )
    digest = fingerprint(items, validated.rules)
    return LabelSet(
        id=f"ls-{digest[:16]}",
        fingerprint=digest,
        created_ts=created_ts,
        rules=validated.rules,
        items=items,
        exclusions=tuple(validated.exclusion_counts().items()),
        n_pending=len(validated.pending),
        n_conflicts=len(validated.conflicts),
        reported_fault=sum(o.reported_fault for o in validated.outcomes),
        reported_no_fault=sum(o.reported_no_fault for o in validated.outcomes),
    )


def max_cohort_share(
    label_set: LabelSet, *, limit: float = MAX_COHORT_SHARE, by: Literal["weight", "count"] = "weight"
) -> CohortShare:
    """The dominant cohort's share of the labels (by training weight or by count), checked against `limit`.

    A fleet of one cohort cannot pass a limit below 1; an empty label set passes with share 0.

    >>> from hub.labels.join import join
    >>> from hub.labels.types import AnnotationRecord, PredictionRef
    >>> from hub.labels.validate import validate
    >>> p = [PredictionRef(f"t{i}", "d", 0.0, cohort=site) for i, site in enumerate(["a", "a", "a", "b"])]
    >>> a = [AnnotationRecord(f"a{i}", "d", "fault", "ann", "confirmed", 1.0, 0.0, trace_id=f"t{i}") for i in range(4)]
    >>> ls = build_label_set(validate(join(a, p), now=0.0, ttl_s=60.0), created_ts=0.0)
    >>> max_cohort_share(ls)
    CohortShare(cohort='a', share=0.75, limit=0.5, by='weight', ok=False)
    """
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"limit must lie in (0, 1], got {limit}")
    stats = label_set.cohorts()
    sizes = {c: (s.weight if by == "weight" else float(s.n)) for c, s in stats.items()}
    total = math.fsum(sizes.values())
    if total <= 0.0:
        return CohortShare(None, 0.0, limit, by, True)
    cohort = max(sorted(sizes), key=lambda c: sizes[c])
    share = sizes[cohort] / total
    return CohortShare(cohort, share, limit, by, share <= limit)

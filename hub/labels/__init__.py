"""Labels from the field: join annotations to predictions, validate them, vote, and version label sets.

Pure functions over small frozen dataclasses; no I/O and no clock (``now`` is passed in). One step per module:

- `types`: `AnnotationRecord`, `PredictionRef` (inputs) and the results (`JoinResult`, `Validation`, …).
- `signals`: quality weight of each signal kind; thumbs-style kinds are reported, never trained on.
- `join`: resolve annotations by trace_id or time range; unknown traces stay *pending*.
- `consensus`: weighted vote per trace, annotator reliability and agreement flags.
- `validate`: screen every annotation and record why each excluded one left.
- `labelset`: the fingerprinted `LabelSet` a training run names, and the cohort-dominance check.

Typical use::

    joined = join(annotations, predictions)
    unreliable = flagged(annotator_agreement(joined.votes(TRAINABLE_SIGNALS)))
    validated = validate(joined, now=now, ttl_s=settings.label_ttl_s, unreliable_technicians=unreliable)
    label_set = build_label_set(validated, created_ts=now)
    check = max_cohort_share(label_set)
"""

from hub.labels.consensus import (
    AnnotatorAgreement,
    Consensus,
    ReliabilityPrior,
    annotator_agreement,
    consensus,
    flagged,
    tally,
)
from hub.labels.join import join
from hub.labels.labelset import CohortShare, CohortStats, LabelItem, LabelSet, build_label_set, max_cohort_share
from hub.labels.signals import SIGNAL_WEIGHTS, TRAINABLE_SIGNALS, UNTRAINABLE_SIGNALS, signal_weight
from hub.labels.types import (
    REASONS,
    AnnotationRecord,
    Exclusion,
    Joined,
    JoinResult,
    PredictionRef,
    Reason,
    Rules,
    TraceOutcome,
    Validation,
    Vote,
)
from hub.labels.validate import validate

__all__ = [
    "REASONS",
    "SIGNAL_WEIGHTS",
    "TRAINABLE_SIGNALS",
    "UNTRAINABLE_SIGNALS",
    "AnnotationRecord",
    "AnnotatorAgreement",
    "CohortShare",
    "CohortStats",
    "Consensus",
    "Exclusion",
    "JoinResult",
    "Joined",
    "LabelItem",
    "LabelSet",
    "PredictionRef",
    "Reason",
    "ReliabilityPrior",
    "Rules",
    "TraceOutcome",
    "Validation",
    "Vote",
    "annotator_agreement",
    "build_label_set",
    "consensus",
    "flagged",
    "join",
    "max_cohort_share",
    "signal_weight",
    "tally",
    "validate",
]

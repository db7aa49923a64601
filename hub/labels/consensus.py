"""Weighted vote per trace, and how far each annotator can be trusted.

A vote weighs ``signal quality × annotator confidence × annotator reliability``; the trace's label is
the heavier side and its confidence the winning share of the total weight. Below the agreement
threshold (0.7 by default: the winner must outweigh the loser more than 2:1) the trace is a conflict,
surfaced and never trained on. A tie is always a conflict.

Reliability is a technician's agreement with their *peers'* consensus on *other* traces, shrunk toward a
Beta prior and divided by the prior mean, so a technician without history counts exactly 1.0 ("neutral"),
one who keeps agreeing tends to 1 / mean (1.25 by default), one who keeps disagreeing tends to 0.
Leaving the technician out of the peer vote, and the trace out of their record, stops a vote from
vouching for itself. Peer votes are weighed without reliability, so nothing is circular.

Sums use `math.fsum`, so results do not depend on the order of the votes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hub.labels.attribution import annotator_weight
from hub.labels.signals import signal_weight
from hub.labels.types import Vote
from shared.messages import Label

AGREEMENT_THRESHOLD = 0.7
"""Default winning share needed for consensus: more than 2:1 for the heavier side."""
FLAG_BELOW = 0.6
"""Default agreement rate under which an annotator is flagged unreliable..."""
MIN_COMPARED = 10
"""...once compared with a peer consensus at least this often (a competent 85 % annotator falls under
0.6 on 10 comparisons with probability ≈ 1 %)."""


@dataclass(frozen=True)
class ReliabilityPrior:
    """Beta prior on an annotator's agreement rate: `mean`, worth `strength` comparisons.

    >>> prior = ReliabilityPrior()
    >>> prior.multiplier(0, 0), round(prior.multiplier(6, 6), 4), round(prior.multiplier(0, 6), 4)
    (1.0, 1.15, 0.4)
    """

    mean: float = 0.8
    strength: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.mean < 1.0:
            raise ValueError("the prior mean must lie strictly between 0 and 1")
        if not (math.isfinite(self.strength) and self.strength > 0.0):
            raise ValueError("the prior strength must be positive")

    def multiplier(self, agreed: int, compared: int) -> float:
        """Posterior mean agreement over the prior mean: 1.0 with no evidence."""
        if not 0 <= agreed <= compared:
            raise ValueError(f"need 0 <= agreed <= compared, got {agreed}, {compared}")
        if compared == 0:
            return 1.0
        posterior = (self.mean * self.strength + agreed) / (self.strength + compared)
        return posterior / self.mean


DEFAULT_PRIOR = ReliabilityPrior()


@dataclass(frozen=True)
class Consensus:
    """The vote on one trace. `label` is None for a conflict; `confidence` is the winning share."""

    trace_id: str
    label: Label | None
    confidence: float
    weight_fault: float
    weight_no_fault: float
    n_votes: int

    @property
    def conflict(self) -> bool:
        return self.label is None


@dataclass(frozen=True)
class AnnotatorAgreement:
    """How often a technician agreed with their peers' consensus, and whether that flags them."""

    technician_id: str
    n_votes: int
    n_compared: int
    n_agreed: int
    rate: float | None
    reliability: float
    flagged: bool


def _check_threshold(threshold: float) -> None:
    if not 0.5 <= threshold <= 1.0:
        raise ValueError(f"the agreement threshold must lie in [0.5, 1], got {threshold}")


def vote_weight(vote: Vote, reliability: float = 1.0) -> float:
    """Signal quality × confidence × reliability (× `DEVICE_VOTE_WEIGHT` for a device-sent vote).

    >>> vote_weight(Vote("a1", "t1", "tech", "fault", "escalation", 0.5))
    0.2
    >>> vote_weight(Vote("a1", "t1", "device:pump-1", "fault", "confirmed", 1.0))
    0.4
    """
    return signal_weight(vote.signal) * vote.confidence * reliability * annotator_weight(vote.technician_id)


def tally(
    votes: Iterable[Vote], *, threshold: float = AGREEMENT_THRESHOLD, reliability: Mapping[str, float] | None = None
) -> Consensus:
    """Weighted vote of one trace's votes; `reliability` maps technician_id to a multiplier (default 1).

    Examples
    --------
    One confirmed fault against two thumbs-up "no fault": the inspection wins.

    >>> votes = [
    ...     Vote("a1", "t1", "alice", "fault", "confirmed", 1.0),
    ...     Vote("a2", "t1", "bob", "no_fault", "thumbs", 1.0),
    ...     Vote("a3", "t1", "carol", "no_fault", "thumbs", 1.0),
    ... ]
    >>> c = tally(votes)
    >>> c.label, round(c.confidence, 4)
    ('fault', 0.8865)

    Two confirmed verdicts that disagree: a conflict.

    >>> tally([votes[0], Vote("a4", "t1", "dave", "no_fault", "confirmed", 1.0)]).label is None
    True
    """
    _check_threshold(threshold)
    votes = list(votes)
    trace_ids = {v.trace_id for v in votes}
    if len(trace_ids) != 1:
        raise ValueError(f"tally needs the votes of exactly one trace, got {len(trace_ids)}")
    rel = reliability or {}
    w_fault = math.fsum(vote_weight(v, rel.get(v.technician_id, 1.0)) for v in votes if v.label == "fault")
    w_no = math.fsum(vote_weight(v, rel.get(v.technician_id, 1.0)) for v in votes if v.label == "no_fault")
    total = w_fault + w_no
    label: Label | None = None
    confidence = 0.0
    if total > 0.0:
        confidence = max(w_fault, w_no) / total
        if w_fault != w_no and confidence >= threshold:
            label = "fault" if w_fault > w_no else "no_fault"
    return Consensus(trace_ids.pop(), label, confidence, w_fault, w_no, len(votes))


def _by_trace(votes: Iterable[Vote]) -> dict[str, list[Vote]]:
    grouped: dict[str, list[Vote]] = defaultdict(list)
    for vote in votes:
        grouped[vote.trace_id].append(vote)
    return grouped


def peer_agreement(
    votes: Iterable[Vote], *, threshold: float = AGREEMENT_THRESHOLD
) -> dict[tuple[str, str], tuple[int, int]]:
    """``(agreed, compared)`` per ``(technician_id, trace_id)``: each vote against the others' consensus.

    A vote is compared only where the *other* technicians on that trace reach consensus on their own
    (weighed without reliability); a lone annotator, or peers in conflict, give no evidence.

    >>> ann = Vote("a1", "t1", "ann", "fault", "confirmed", 1.0)
    >>> peer_agreement([ann, Vote("a2", "t1", "ben", "no_fault", "confirmed", 1.0)])
    {('ann', 't1'): (0, 1), ('ben', 't1'): (0, 1)}
    """
    _check_threshold(threshold)
    result: dict[tuple[str, str], tuple[int, int]] = {}
    for trace_id, trace_votes in sorted(_by_trace(votes).items()):
        for technician in sorted({v.technician_id for v in trace_votes}):
            peers = [v for v in trace_votes if v.technician_id != technician]
            if not peers:
                continue
            verdict = tally(peers, threshold=threshold).label
            if verdict is None:
                continue
            own = [v for v in trace_votes if v.technician_id == technician]
            result[technician, trace_id] = (sum(v.label == verdict for v in own), len(own))
    return result


def reliabilities(
    votes: Sequence[Vote], *, threshold: float = AGREEMENT_THRESHOLD, prior: ReliabilityPrior = DEFAULT_PRIOR
) -> dict[tuple[str, str], float]:
    """Reliability multiplier per ``(technician_id, trace_id)`` voted on, from agreement on *other* traces."""
    pairs = peer_agreement(votes, threshold=threshold)
    totals: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for (technician, _), (agreed, compared) in pairs.items():
        a, c = totals[technician]
        totals[technician] = (a + agreed, c + compared)
    result: dict[tuple[str, str], float] = {}
    for vote in votes:
        key = (vote.technician_id, vote.trace_id)
        agreed, compared = totals.get(vote.technician_id, (0, 0))
        own_agreed, own_compared = pairs.get(key, (0, 0))
        result[key] = prior.multiplier(agreed - own_agreed, compared - own_compared)
    return result


def consensus(
    votes: Iterable[Vote],
    *,
    threshold: float = AGREEMENT_THRESHOLD,
    prior: ReliabilityPrior | None = DEFAULT_PRIOR,
) -> dict[str, Consensus]:
    """`tally` of every trace, weighing each technician by their reliability on the other traces.

    Pass ``prior=None`` to weigh every technician 1.0. Keys are trace ids in sorted order.

    >>> votes = [Vote("a1", "t1", "ann", "fault", "confirmed", 0.9), Vote("a2", "t2", "ann", "no_fault", "rating", 1.0)]
    >>> {t: (c.label, c.confidence) for t, c in consensus(votes).items()}
    {'t1': ('fault', 1.0), 't2': ('no_fault', 1.0)}
    """
    votes = list(votes)
    rel = reliabilities(votes, threshold=threshold, prior=prior) if prior is not None else {}
    result: dict[str, Consensus] = {}
    for trace_id, trace_votes in sorted(_by_trace(votes).items()):
        weights = {v.technician_id: rel.get((v.technician_id, trace_id), 1.0) for v in trace_votes}
        result[trace_id] = tally(trace_votes, threshold=threshold, reliability=weights)
    return result


def annotator_agreement(
    votes: Iterable[Vote],
    *,
    threshold: float = AGREEMENT_THRESHOLD,
    flag_below: float = FLAG_BELOW,
    min_compared: int = MIN_COMPARED,
    prior: ReliabilityPrior = DEFAULT_PRIOR,
) -> tuple[AnnotatorAgreement, ...]:
    """Agreement of each technician with their peers' consensus; flags ``rate < flag_below`` on enough data.

    Feed it the trainable votes of a recent window; pass the flagged technicians to `validate` as
    ``unreliable_technicians`` (see `flagged`). Sorted by technician_id.

    >>> votes = [Vote(f"a{i}", f"t{i // 3}", tech, "fault" if tech != "zed" else "no_fault", "confirmed", 1.0)
    ...          for i, tech in enumerate(["ann", "ben", "zed"] * 12)]
    >>> [(a.technician_id, a.n_compared, a.rate, a.flagged) for a in annotator_agreement(votes)]
    [('ann', 0, None, False), ('ben', 0, None, False), ('zed', 12, 0.0, True)]
    """
    if not 0.0 <= flag_below <= 1.0:
        raise ValueError("flag_below must lie in [0, 1]")
    if min_compared < 1:
        raise ValueError("min_compared must be at least 1")
    votes = list(votes)
    n_votes: dict[str, int] = defaultdict(int)
    for vote in votes:
        n_votes[vote.technician_id] += 1
    totals: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for (technician, _), (agreed, compared) in peer_agreement(votes, threshold=threshold).items():
        a, c = totals[technician]
        totals[technician] = (a + agreed, c + compared)
    result = []
    for technician in sorted(n_votes):
        agreed, compared = totals.get(technician, (0, 0))
        rate = agreed / compared if compared else None
        flagged = rate is not None and compared >= min_compared and rate < flag_below
        result.append(
            AnnotatorAgreement(
                technician, n_votes[technician], compared, agreed, rate, prior.multiplier(agreed, compared), flagged
            )
        )
    return tuple(result)


def flagged(agreements: Iterable[AnnotatorAgreement]) -> frozenset[str]:
    """The technician ids `annotator_agreement` flagged."""
    return frozenset(a.technician_id for a in agreements if a.flagged)

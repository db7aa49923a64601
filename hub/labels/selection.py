"""What to ask a technician about, under a label budget: the label-selection policy.

Technicians' time is the loop's scarcest resource, so the hub (and the evaluation's technicians) rank the
predictions that could be labelled and ask about the top `budget` of them:

- a **random** share of the budget (`random_share`), drawn uniformly with a seeded generator and recorded as
  such: labels that estimate the model's performance without the policy's bias;
- then the informative rest, **diverse**: candidates are grouped by stratum (device and cohort/regime) and the
  strata take turns, each giving its most informative candidate, the stratum whose best is most informative
  first, so no single device or regime takes the budget;
- within a stratum, **disagreement** first (a shadow model, during a rollout's trial, decides otherwise than the
  serving one), then **uncertainty**: closest to the threshold first; ties by time, then key.

Pure: the same candidates (in any order), budget and seed give the same picks.

>>> c = [Candidate(f"t{i}", score=i / 10, threshold=0.5, device="d", ts=float(i)) for i in range(10)]
>>> [(p.candidate.key, p.reason) for p in select(c, 3, seed=1, random_share=0.0)]
[('t5', 'uncertainty'), ('t4', 'uncertainty'), ('t6', 'uncertainty')]
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

PickReason = Literal["random", "disagreement", "uncertainty"]

RANDOM_SHARE = 0.2
"""The share of a budget drawn at random (the unbiased slice), by default."""


@dataclass(frozen=True)
class Candidate:
    """A prediction that could be labelled: the serving model's score and threshold, the shadow model's if one
    scored it, where it comes from (device, cohort or operating regime) and when (`ts`)."""

    key: str
    score: float
    threshold: float
    device: str
    ts: float
    cohort: str | None = None
    shadow_score: float | None = None
    shadow_threshold: float | None = None

    @property
    def disagrees(self) -> bool:
        """The shadow model decides otherwise than the serving one."""
        if self.shadow_score is None or not math.isfinite(self.shadow_score):
            return False
        shadow_threshold = self.threshold if self.shadow_threshold is None else self.shadow_threshold
        return (self.score >= self.threshold) != (self.shadow_score >= shadow_threshold)

    @property
    def margin(self) -> float:
        """Distance to the threshold (inf for a score that is not a number: least informative)."""
        return abs(self.score - self.threshold) if math.isfinite(self.score) else math.inf


@dataclass(frozen=True)
class Pick:
    """A candidate chosen for labelling, why, and its place in the ranking (0 first)."""

    candidate: Candidate
    reason: PickReason
    rank: int


def budget_for(share: float, n: int) -> int:
    """How many of `n` candidates a budget of `share` allows (rounded up; 0 for none).

    >>> budget_for(0.1, 95), budget_for(0.0, 10), budget_for(1.0, 7)
    (10, 0, 7)
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError("a label budget is a share in [0, 1]")
    return min(n, math.ceil(share * n - 1e-9))


def select(candidates: Iterable[Candidate], budget: int, *, seed: int | str,
           random_share: float = RANDOM_SHARE) -> list[Pick]:
    """The top `budget` candidates to label, ranked: the random slice first (``ceil(random_share * budget)``
    of them), then the informative ones by stratum in turn (see the module docstring). Duplicate keys count once."""
    if budget < 0:
        raise ValueError("budget must be >= 0")
    if not 0.0 <= random_share <= 1.0:
        raise ValueError("random_share must lie in [0, 1]")
    pool = sorted({c.key: c for c in candidates}.values(), key=lambda c: (c.ts, c.key))
    budget = min(budget, len(pool))
    n_random = min(budget, math.ceil(random_share * budget - 1e-9))
    rng = random.Random(f"label-selection:{seed}")
    drawn = sorted(rng.sample(range(len(pool)), n_random))
    picks = [Pick(pool[i], "random", rank) for rank, i in enumerate(drawn)]
    chosen = set(drawn)
    rest = [c for i, c in enumerate(pool) if i not in chosen]
    for c in _by_strata(rest, budget - n_random):
        picks.append(Pick(c, "disagreement" if c.disagrees else "uncertainty", len(picks)))
    return picks


def _informative(c: Candidate) -> tuple[int, float, float, str]:
    return (0 if c.disagrees else 1, c.margin, c.ts, c.key)


def _by_strata(candidates: Sequence[Candidate], n: int) -> list[Candidate]:
    """`n` candidates, the strata (device, cohort) taking turns, each its most informative first."""
    strata: dict[tuple[str, str], list[Candidate]] = {}
    for c in candidates:
        strata.setdefault((c.device, c.cohort or ""), []).append(c)
    queues = [sorted(group, key=_informative, reverse=True) for group in strata.values()]  # best last: pop()
    out: list[Candidate] = []
    while len(out) < n and queues:
        queues.sort(key=lambda q: _informative(q[-1]))
        for q in queues:
            if len(out) >= n:
                break
            out.append(q.pop())
        queues = [q for q in queues if q]
    return out


__all__ = ["RANDOM_SHARE", "Candidate", "Pick", "PickReason", "budget_for", "select"]

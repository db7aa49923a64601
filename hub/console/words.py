"""What the console says in words: times, ages, severity, rollout decisions, the features that moved a score.

Pure functions over values (time passed in), so the pages stay thin and these are tested exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("high", "medium", "low")


def iso(ts: float | None) -> str:
    """A unix time as ISO 8601 UTC to the second (``2026-12-05T16:22:08Z``); an em dash for none."""
    if ts is None or not math.isfinite(ts):
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(seconds: float) -> str:
    """A duration as people say it: ``45 s``, ``12 min``, ``3 h``, ``2 d``."""
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 36 * 3600:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} d"


def severity(max_score: float, windows: int) -> str:
    """How urgent an incident looks: a high score or a long run of alarm windows is ``high``."""
    if max_score >= 0.9 or windows >= 20:
        return "high"
    if max_score >= 0.7 or windows >= 5:
        return "medium"
    return "low"


def severity_rank(level: str) -> int:
    return SEVERITIES.index(level) if level in SEVERITIES else len(SEVERITIES)


DECISION_WORDS: Mapping[str, str] = {
    "assign": "Started: the stage's devices were told to load the candidate",
    "wait": "Watching: not enough evidence yet to move on",
    "advance": "Moved on to the next stage",
    "complete": "Completed: the candidate is now the active version",
    "rollback": "Rolled back: devices return to the incumbent",
    "abort": "Aborted: devices return to the incumbent",
}


def decision_words(decision: Mapping[str, Any] | None, *, paused: bool = False, status: str = "running") -> str:
    """The current decision of a rollout as one sentence (what, then why)."""
    if paused and status == "running":
        return "Paused by an operator: the stage clock is stopped (a failing device still rolls it back)."
    if decision is None:
        return "No decision yet."
    head = DECISION_WORDS.get(str(decision.get("kind")), str(decision.get("kind", "")).capitalize())
    reason = str(decision.get("reason") or "").strip()
    return f"{head}. {reason[0].upper() + reason[1:]}." if reason else f"{head}."


@dataclass(frozen=True)
class FeatureMove:
    """One feature of a window against the version's reference: its value, the reference mean, and the z-score."""

    name: str
    value: float
    mean: float
    z: float


def _moments(edges: Sequence[float], counts: Sequence[int]) -> tuple[float, float] | None:
    """Mean and standard deviation of a histogram over `edges` (the two open end bins at the outer edges)."""
    if len(edges) < 2 or sum(counts) == 0:
        return None
    centres = [edges[0]] + [(a + b) / 2 for a, b in itertools.pairwise(edges)] + [edges[-1]]
    n = float(sum(counts))
    mean = sum(c * x for c, x in zip(counts, centres, strict=True)) / n
    var = sum(c * (x - mean) ** 2 for c, x in zip(counts, centres, strict=True)) / n
    width = (edges[-1] - edges[0]) / max(1, len(edges) - 1)
    return mean, math.sqrt(var) or width or 1.0


def feature_moves(features: Sequence[float], names: Sequence[str], bin_edges: Sequence[Sequence[float]],
                  histograms: Sequence[Sequence[int]], top: int = 5) -> list[FeatureMove]:
    """The `top` features furthest from the reference, by absolute z-score against the reference histogram.

    >>> [m.name for m in feature_moves([0.0, 9.0], ["a", "b"], [[-1, 0, 1], [-1, 0, 1]], [[0, 5, 5, 0]] * 2)]
    ['b', 'a']
    """
    moves = []
    for value, name, edges, counts in zip(features, names, bin_edges, histograms, strict=False):
        moments = _moments(edges, counts)
        if moments is None or not math.isfinite(value):
            continue
        mean, std = moments
        moves.append(FeatureMove(name, value, mean, (value - mean) / std))
    return sorted(moves, key=lambda m: -abs(m.z))[:top]


def score_words(score: float, threshold: float) -> str:
    """The score against the threshold, in words."""
    if threshold <= 0:
        return f"score {score:.3f}"
    side = "above" if score >= threshold else "below"
    return f"score {score:.3f}, {side} the threshold {threshold:.3f} ({score / threshold:.1f}×)"


def drift_words(report: Mapping[str, Any]) -> str:
    """A drift report's verdict with its test, threshold and reason, in words."""
    test = {"chi2": "chi-squared", "ks": "Kolmogorov–Smirnov"}.get(str(report.get("test")), str(report.get("test")))
    verdict = str(report.get("verdict", "")).replace("_", " ")
    drifted = [str(f.get("name")) for f in report.get("features", []) if isinstance(f, Mapping) and f.get("drifted")]
    moved = f" Drifted features: {', '.join(drifted)}." if drifted else ""
    return (f"{verdict.capitalize()}: {report.get('reason', '')}. Each feature is compared with the reference by the "
            f"{test} test at α = {report.get('alpha')} (p-values adjusted for testing many features at once) and "
            f"must also move by a PSI above {report.get('psi_threshold')}; {report.get('n_current')} windows "
            f"against {report.get('n_reference')} in the reference.{moved}")

"""What a drift report says: plain frozen results, JSON-serialisable through `DriftReport.to_dict`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from hub.drift.psi import Band

Verdict = Literal["drift", "no_drift", "insufficient_data"]
Test = Literal["chi2", "ks"]

# _MANY: a fleet's drift run builds one FeatureDrift per feature of every device (240,000 for 10,000 devices of 24
# features), and a frozen dataclass's __init__ costs ~10x a plain one's; the per-scope parts are plain (hashable)
# dataclasses, never changed after `hub.drift.report` builds them. DriftReport, one per scope, stays frozen.


@dataclass(unsafe_hash=True)  # not frozen: see _MANY
class FeatureDrift:
    """One feature's shift: effect sizes, both tests, the BH-adjusted p-value of `test`, the decision."""

    name: str
    n_current: int
    psi: float
    band: Band
    js_distance: float
    chi2_statistic: float
    chi2_dof: int
    chi2_p_value: float
    ks_statistic: float
    ks_p_value: float
    p_adjusted: float
    drifted: bool


@dataclass(unsafe_hash=True)  # not frozen: see _MANY
class ScoreDrift:
    """Shift of the prediction-score histogram (a single test, so no FDR adjustment)."""

    psi: float
    band: Band
    js_distance: float
    chi2_p_value: float
    drifted: bool


@dataclass(unsafe_hash=True)  # not frozen: see _MANY
class AnomalyRateChange:
    """Change of the anomaly rate: two-proportion z-test gated by Cohen's h effect size."""

    rate_reference: float
    rate_current: float
    effect: float
    z: float
    p_value: float
    changed: bool


@dataclass(frozen=True)
class DriftReport:
    """The drift verdict for one scope (``fleet``, ``cohort:<name>``, ``device:<id>`` or any label)."""

    scope: str
    verdict: Verdict
    reason: str
    n_reference: int
    n_current: int
    test: Test
    alpha: float
    psi_threshold: float
    min_samples: int
    features: tuple[FeatureDrift, ...]
    score: ScoreDrift | None
    anomaly_rate: AnomalyRateChange | None

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (non-finite floats become None), with ``drifted_features``."""
        out = _plain(self)
        out["features"] = [_plain(f) for f in self.features]
        out["score"] = None if self.score is None else _plain(self.score)
        out["anomaly_rate"] = None if self.anomaly_rate is None else _plain(self.anomaly_rate)
        out["drifted_features"] = self.drifted_features
        return out


def _plain(obj: object) -> dict[str, Any]:
    # Fields are already Python scalars (built from .tolist()); only non-finite floats need care.
    out = dict(vars(obj))
    for k, v in out.items():
        if v.__class__ is float and not math.isfinite(v):
            out[k] = None
    return out

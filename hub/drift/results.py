"""What a drift report says: plain frozen results, JSON-serialisable through `DriftReport.to_dict`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from hub.drift.psi import Band

Verdict = Literal["drift", "no_drift", "insufficient_data"]
Test = Literal["chi2", "ks"]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ScoreDrift:
    """Shift of the prediction-score histogram (a single test, so no FDR adjustment)."""

    psi: float
    band: Band
    js_distance: float
    chi2_p_value: float
    drifted: bool


@dataclass(frozen=True)
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
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in vars(obj).items()}

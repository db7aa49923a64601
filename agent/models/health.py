"""The health-check verdict on a freshly swapped model, and the shadow comparison beside the incumbent (pure).

`ModelManager` feeds both one window at a time; nothing here touches the store, a clock or the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Verdict = Literal["pending", "ok", "failed"]


@dataclass(frozen=True)
class HealthCriteria:
    """What a swapped-in model must show: this many windows scored, within this latency and memory growth."""

    windows: int = 20
    latency_ms: float = 100.0  # p95 of per-window scoring latency
    rss_growth_mb: float | None = None  # resident memory growth since the swap at most (None: not watched)


@dataclass
class HealthEvidence:
    """What the serving model showed so far during its health check."""

    windows: int = 0
    errors: int = 0
    nan_scores: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    baseline_rss_mb: float | None = None  # the process's RSS at the swap
    peak_rss_mb: float | None = None

    def add(self, *, error: bool, finite: bool, latency_s: float, rss_mb: float | None = None) -> None:
        self.windows += 1
        self.errors += error
        self.nan_scores += not error and not finite
        self.latencies_ms.append(latency_s * 1000.0)
        if rss_mb is not None:
            self.peak_rss_mb = max(self.peak_rss_mb or rss_mb, rss_mb)

    @property
    def rss_growth_mb(self) -> float:
        if self.baseline_rss_mb is None or self.peak_rss_mb is None:
            return 0.0
        return max(0.0, self.peak_rss_mb - self.baseline_rss_mb)

    def metrics(self) -> dict[str, float]:
        lat = np.asarray(self.latencies_ms or [0.0])
        return {"windows": float(self.windows), "inference_errors": float(self.errors),
                "nan_scores": float(self.nan_scores), "latency_p50_ms": float(np.percentile(lat, 50)),
                "latency_p95_ms": float(np.percentile(lat, 95)), "latency_max_ms": float(lat.max()),
                "rss_growth_mb": self.rss_growth_mb}


def health_verdict(evidence: HealthEvidence, criteria: HealthCriteria) -> tuple[Verdict, str]:
    """Fail at the first inference error or NaN score; after `criteria.windows` windows judge latency."""
    if evidence.errors:
        return "failed", f"{evidence.errors} inference error(s) in {evidence.windows} windows"
    if evidence.nan_scores:
        return "failed", f"{evidence.nan_scores} NaN/inf score(s) in {evidence.windows} windows"
    if criteria.rss_growth_mb is not None and evidence.rss_growth_mb > criteria.rss_growth_mb:
        return "failed", (f"memory grew by {evidence.rss_growth_mb:.0f} MB since the swap, over the "
                          f"{criteria.rss_growth_mb:.0f} MB budget")
    if evidence.windows < criteria.windows:
        return "pending", f"{evidence.windows}/{criteria.windows} windows"
    p95 = float(np.percentile(np.asarray(evidence.latencies_ms), 95))
    if p95 > criteria.latency_ms:
        return "failed", f"p95 latency {p95:.1f} ms exceeds the {criteria.latency_ms:.1f} ms budget"
    return "ok", f"{evidence.windows} windows, no errors or NaNs, p95 latency {p95:.2f} ms"


@dataclass
class ShadowStats:
    """The candidate beside the incumbent over one reporting period."""

    windows: int = 0
    compared: int = 0
    disagreements: int = 0
    abs_diff_sum: float = 0.0
    nan_scores: int = 0
    errors: int = 0
    incumbent_anomalies: int = 0
    shadow_anomalies: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0

    def metrics(self) -> dict[str, float]:
        n, c = max(self.windows, 1), max(self.compared, 1)
        return {
            "windows": float(self.windows), "compared": float(self.compared),
            "disagreements": float(self.disagreements), "disagreement_rate": self.disagreements / c,
            "mean_abs_score_diff": self.abs_diff_sum / c, "nan_scores": float(self.nan_scores),
            "inference_errors": float(self.errors), "incumbent_anomaly_rate": self.incumbent_anomalies / c,
            "shadow_anomaly_rate": self.shadow_anomalies / c, "latency_mean_ms": self.latency_sum_ms / n,
            "latency_max_ms": self.latency_max_ms,
        }

"""The health verdict on a swapped-in model: errors and NaNs fail at once, latency is judged at the end."""

from __future__ import annotations

from agent.models.health import HealthCriteria, HealthEvidence, health_verdict


def test_health_verdict():
    criteria = HealthCriteria(windows=3, latency_ms=10.0)
    evidence = HealthEvidence()
    assert health_verdict(evidence, criteria)[0] == "pending"
    for _ in range(3):
        evidence.add(error=False, finite=True, latency_s=0.001)
    assert health_verdict(evidence, criteria)[0] == "ok"
    slow = HealthEvidence()
    for _ in range(3):
        slow.add(error=False, finite=True, latency_s=0.05)
    verdict, reason = health_verdict(slow, criteria)
    assert verdict == "failed" and "latency" in reason
    nan = HealthEvidence()
    nan.add(error=False, finite=False, latency_s=0.001)
    assert health_verdict(nan, criteria) == ("failed", "1 NaN/inf score(s) in 1 windows")
    err = HealthEvidence()
    err.add(error=True, finite=False, latency_s=0.001)
    assert health_verdict(err, criteria)[0] == "failed" and err.metrics()["inference_errors"] == 1.0

"""The trial of a new model in a memory-limited child (issue 10 #3): a hungry model is refused, not the agent."""

from __future__ import annotations

import pytest

from agent.models.health import HealthCriteria, HealthEvidence, health_verdict
from agent.models.trial import TrialLimits, current_rss_mb, run_trial
from shared.errors import ModelLoadError
from tests.field.hungry import hungry_version


def test_a_model_that_allocates_more_than_the_limit_is_refused_in_the_child(tmp_path, initial_model_dir):
    before = current_rss_mb()
    assert run_trial(initial_model_dir, TrialLimits(memory_mb=300)) < 300
    hungry = hungry_version(initial_model_dir, tmp_path / "v-hungry", "v-hungry", mb=1200)
    with pytest.raises(ModelLoadError, match=r"trial .*allocate"):
        run_trial(hungry, TrialLimits(memory_mb=300))
    assert current_rss_mb() - before < 100  # the 1.2 GB went to the child, not here


def test_the_health_check_fails_a_model_whose_memory_keeps_growing():
    evidence = HealthEvidence(baseline_rss_mb=200.0)
    criteria = HealthCriteria(windows=3, latency_ms=1000.0, rss_growth_mb=50.0)
    for rss in (210.0, 230.0, 260.0):
        evidence.add(error=False, finite=True, latency_s=0.001, rss_mb=rss)
    verdict, reason = health_verdict(evidence, criteria)
    assert verdict == "failed" and "memory grew by 60 MB" in reason
    assert health_verdict(evidence, HealthCriteria(windows=3, latency_ms=1000.0))[0] == "ok"  # not watched

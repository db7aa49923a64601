"""A ten-device fleet in three cohorts, short stage policies, and evidence builders with healthy defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hub.rollout import Evidence, HealthLimits, RolloutPlan, Scoring, StagePolicy, plan_rollout

FLEET: dict[str, str] = {
    **{f"pump-{i}": "north/pump" for i in range(1, 6)},
    **{f"fan-{i}": "north/fan" for i in range(1, 4)},
    **{f"press-{i}": "south/press" for i in range(1, 3)},
}
POLICIES = {
    "shadow": StagePolicy(min_duration_s=600, min_windows=50, timeout_s=3600),
    "canary": StagePolicy(min_duration_s=1200, min_windows=100, timeout_s=7200),
    "fleet": StagePolicy(min_duration_s=600, min_windows=50, timeout_s=7200),
}
LIMITS = HealthLimits(min_rate_windows=100)
SHAPE = (0.40, 0.25, 0.12, 0.08, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005)  # scores mostly low
T0 = 1_000.0


def make_plan(**kwargs: Any) -> RolloutPlan:
    args: dict[str, Any] = {
        "rollout_id": "r-1",
        "candidate": "v2",
        "incumbent": "v1",
        "seed": 7,
        "canary": 0.3,
        "shadow": True,
        "policies": POLICIES,
        "limits": LIMITS,
        **kwargs,
    }
    return plan_rollout(FLEET, **args)


def scoring(
    windows: int,
    rate: float = 0.02,
    *,
    nan: int = 0,
    errors: int = 0,
    latency: float | None = 1.5,
    shape: tuple[float, ...] = SHAPE,
) -> Scoring:
    return Scoring(
        windows=windows,
        anomalies=round(windows * rate),
        inference_errors=errors,
        nan_scores=nan,
        latency_p99_ms=latency,
        score_hist=tuple(round(windows * p) for p in shape),
    )


def evidence(
    plan: RolloutPlan,
    stage: str,
    windows: int = 200,
    *,
    silent: Iterable[str] = (),
    override: Mapping[str, Evidence] | None = None,
) -> dict[str, Evidence]:
    """Healthy evidence: stage devices loaded the candidate and scored `windows` windows; the rest (and the
    shadow devices, beside the candidate) report the incumbent's numbers as control."""
    inside = set(plan.stage(stage).devices)
    shadow = stage == "shadow"
    out: dict[str, Evidence] = {}
    for device in plan.fleet:
        if device in inside:
            out[device] = Evidence(
                loaded=True,
                candidate=scoring(windows),
                incumbent=scoring(windows) if shadow else None,
                disagreements=windows // 100,
            )
        else:
            out[device] = Evidence(incumbent=scoring(windows))
    for device in silent:
        out.pop(device)
    out.update(override or {})
    return out


def passed_gate(registry: Any, version: str) -> None:
    """Record a passed gate decision on a registered candidate, as a retrain's gate does (a rollout takes no
    candidate without one: `hub.registry.approval`)."""
    registry.transition(version, "candidate", actor="hub:retrain", action="gate", reason="gate passed against v1",
                        gate={"verdict": "pass", "passed": True, "reasons": []})


def active_and_candidate(registry: Any, initial_model_dir: Path, tmp: Path) -> None:
    """v1 registered as the active version and v2 (the same model re-versioned under `tmp`) as a candidate whose
    gate passed: what a rollout test starts from."""
    from tests.hub.rollout.test_service import variant  # the test module imports this one

    registry.register(initial_model_dir, actor="operator:ana", reason="bootstrap", status="active")
    registry.register(variant(initial_model_dir, tmp / "v2", "v2"), actor="hub:retrain", reason="drift")
    passed_gate(registry, "v2")

"""A rollout plan: which devices see the candidate at each stage, for how long, and what counts as healthy.

`plan_rollout` picks canary devices deterministically: each device gets a rank from
``sha256(seed:salt:device)`` (rendezvous hashing, so adding a device never reshuffles the others), and the
pick goes round-robin over cohorts, largest first, so a small canary still covers as many sites and
asset types as it has devices.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.rollout.errors import RolloutError
from hub.rollout.evidence import Expectation, Scoring

StageName = Literal["shadow", "canary", "fleet"]
Mode = Literal["active", "shadow"]
STAGE_ORDER: tuple[StageName, ...] = ("shadow", "canary", "fleet")


@dataclass(frozen=True)
class StagePolicy:
    """How long a stage is watched and how much evidence it needs.

    A stage advances no sooner than `min_duration_s` after it began, once at least `min_reporting` of its
    devices (1.0: every one) reported the candidate loaded and scored `min_windows` windows with it; it
    rolls back when that has not happened `timeout_s` after it began (time paused does not count).
    """

    min_duration_s: float
    min_windows: int
    timeout_s: float
    min_reporting: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and 0.0 <= self.min_duration_s < self.timeout_s):
            raise RolloutError(f"need 0 <= min_duration_s < timeout_s (finite), got {self}")
        if self.min_windows < 0 or not 0.0 < self.min_reporting <= 1.0:
            raise RolloutError(f"need min_windows >= 0 and 0 < min_reporting <= 1, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_duration_s": self.min_duration_s,
            "min_windows": self.min_windows,
            "timeout_s": self.timeout_s,
            "min_reporting": self.min_reporting,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StagePolicy:
        return cls(float(d["min_duration_s"]), int(d["min_windows"]), float(d["timeout_s"]), float(d["min_reporting"]))


HOUR = 3600.0
DEFAULT_POLICIES: Mapping[StageName, StagePolicy] = {
    # Shadow costs nothing but CPU: an hour and 200 windows per device show it loads, runs and agrees.
    "shadow": StagePolicy(min_duration_s=1 * HOUR, min_windows=200, timeout_s=6 * HOUR),
    # The canary decides: four hours covers a shift change of operating regimes on most sites.
    "canary": StagePolicy(min_duration_s=4 * HOUR, min_windows=500, timeout_s=24 * HOUR),
    # The fleet only has to show every device took the model; a day's timeout lets store-and-forward catch up.
    "fleet": StagePolicy(min_duration_s=1 * HOUR, min_windows=100, timeout_s=24 * HOUR),
}


@dataclass(frozen=True)
class HealthLimits:
    """What a healthy stage looks like next to the control (the incumbent's numbers).

    - `latency_p99_ms` 20: ten times the agent's 2 ms p99 target (bench/agent.py), room for slow gateways;
    - `max_error_rate` 0: any inference error or NaN score rolls back; a model that sometimes fails is broken;
    - `max_score_psi` 0.5: above the 0.2 "significant" drift band, since a retrained model may legitimately
      score differently, yet far below what a collapsed or inverted score distribution gives (> 1);
    - anomaly rate within `anomaly_rate_factor` 2 of control to advance, rolled back beyond
      `rollback_anomaly_factor` 5; both rates get `anomaly_rate_floor` 0.005 added first, so 0 vs 1 anomaly
      in a few hundred windows is not a factor of infinity;
    - `max_disagreement` 0.05: more than one shadow window in twenty decided differently is more change
      than a retrain should bring;
    - rates and histograms are compared only once each side has `min_rate_windows` 500 windows;
    - `min_traffic_samples` 50: when the control is not trusted, the candidate's scores on the stage's traffic
      stand in for its reference only once the devices' random slice holds this many of the vectors scored
      (`hub.rollout.traffic`; at the agents' 1% sample, 5,000 windows);
    - `estimate_max_drop` 0.2: the candidate's label-free estimate on the stage's traffic (`Estimate`) holds the
      stage when its recall, or its F1, is more than this below what its gate-time recall and false-alarm rate give
      on that traffic. Never a rollback by itself: an estimate is weaker evidence than labels (it holds while the
      calibration's score -> failure map holds), so a stage it alone holds to `timeout_s` is paused for an
      operator instead (`hub.rollout.machine`). 0.2 is wide on purpose: the estimate rests on a stage's few
      random vectors and a calibration fitted on a few hundred labelled rows, so only a drop that large says the
      model misses failures it was gated on catching rather than noise.

    When the control is not trusted (the incumbent drifted), the same factors and PSI limit apply to the
    candidate against its own expectation (`Expectation`) instead: its scores on the feature vectors its stage's
    devices sent during the stage (else the fleet's, else its manifest's reference), with one difference unless it
    is its own devices' traffic: fewer alarms than expected beyond `rollback_anomaly_factor` holds the stage
    instead of rolling back. The expectation is a
    long-run mix (the training set's, or the field's of the past days), and a fleet that is healthier right
    now alarms less (replaying C-MAPSS, a fix's fleet stage alarmed on 2% of windows against an expected 14%
    while its engines were young, and was rolled back). A stage that stays that quiet until `timeout_s` is
    still rolled back; more alarms than expected beyond the factor still roll back at once.
    """

    latency_p99_ms: float = 20.0
    max_error_rate: float = 0.0
    max_score_psi: float = 0.5
    anomaly_rate_factor: float = 2.0
    rollback_anomaly_factor: float = 5.0
    anomaly_rate_floor: float = 0.005
    max_disagreement: float = 0.05
    min_rate_windows: int = 500
    min_traffic_samples: int = 50
    estimate_max_drop: float = 0.2

    def __post_init__(self) -> None:
        values = self.to_dict()
        if not all(math.isfinite(v) and v >= 0 for v in values.values()):
            raise RolloutError(f"health limits must be finite and non-negative, got {values}")
        if not 1.0 <= self.anomaly_rate_factor <= self.rollback_anomaly_factor:
            raise RolloutError("need 1 <= anomaly_rate_factor <= rollback_anomaly_factor")
        if self.anomaly_rate_floor <= 0:
            raise RolloutError("anomaly_rate_floor must be positive")

    def to_dict(self) -> dict[str, float]:
        return {
            "latency_p99_ms": self.latency_p99_ms,
            "max_error_rate": self.max_error_rate,
            "max_score_psi": self.max_score_psi,
            "anomaly_rate_factor": self.anomaly_rate_factor,
            "rollback_anomaly_factor": self.rollback_anomaly_factor,
            "anomaly_rate_floor": self.anomaly_rate_floor,
            "max_disagreement": self.max_disagreement,
            "min_rate_windows": self.min_rate_windows,
            "min_traffic_samples": self.min_traffic_samples,
            "estimate_max_drop": self.estimate_max_drop,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HealthLimits:
        counts = ("min_rate_windows", "min_traffic_samples")  # plans stored before min_traffic_samples: the default
        values: dict[str, Any] = {k: int(v) if k in counts else float(v) for k, v in d.items()}
        return cls(**values)


@dataclass(frozen=True)
class StagePlan:
    """One stage: its devices (sorted) and its policy. Shadow stages run the candidate in shadow mode."""

    name: StageName
    devices: tuple[str, ...]
    policy: StagePolicy

    @property
    def mode(self) -> Mode:
        return "shadow" if self.name == "shadow" else "active"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "devices": list(self.devices), "policy": self.policy.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StagePlan:
        name = d["name"]
        if name not in STAGE_ORDER:
            raise RolloutError(f"unknown stage {name!r}")
        return cls(name, tuple(str(x) for x in d["devices"]), StagePolicy.from_dict(d["policy"]))


@dataclass(frozen=True)
class RolloutPlan:
    """Candidate and incumbent versions, the stages in order (ending with the whole fleet), health limits.

    `baseline` is the incumbent's expected scoring, the control of last resort when no live control
    exists (the fleet stage leaves no device on the incumbent; the state keeps the last live control).
    `expectation` is the candidate's own (from its manifest): the yardstick when the control is not trusted.
    """

    rollout_id: str
    candidate: str
    incumbent: str
    stages: tuple[StagePlan, ...]
    limits: HealthLimits = field(default_factory=HealthLimits)
    baseline: Scoring | None = None
    expectation: Expectation | None = None

    def __post_init__(self) -> None:
        if not self.rollout_id:
            raise RolloutError("a rollout needs an id")
        if not self.candidate or not self.incumbent or self.candidate == self.incumbent:
            raise RolloutError(f"candidate {self.candidate!r} and incumbent {self.incumbent!r} must differ")
        names = [s.name for s in self.stages]
        if not names or names[-1] != "fleet" or names != sorted(set(names), key=STAGE_ORDER.index):
            raise RolloutError(f"stages must be a subsequence of {STAGE_ORDER} ending with fleet, got {names}")
        fleet = set(self.stages[-1].devices)
        for s in self.stages:
            if not s.devices or len(set(s.devices)) != len(s.devices) or list(s.devices) != sorted(s.devices):
                raise RolloutError(f"stage {s.name} needs distinct devices, sorted")
            if not set(s.devices) <= fleet:
                raise RolloutError(f"stage {s.name} has devices outside the fleet: {sorted(set(s.devices) - fleet)}")

    @property
    def fleet(self) -> tuple[str, ...]:
        return self.stages[-1].devices

    def stage(self, name: str) -> StagePlan:
        for s in self.stages:
            if s.name == name:
                return s
        raise RolloutError(f"rollout {self.rollout_id} has no {name} stage")

    def next_stage(self, name: str) -> StagePlan | None:
        i = [s.name for s in self.stages].index(self.stage(name).name)
        return self.stages[i + 1] if i + 1 < len(self.stages) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "candidate": self.candidate,
            "incumbent": self.incumbent,
            "stages": [s.to_dict() for s in self.stages],
            "limits": self.limits.to_dict(),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "expectation": None if self.expectation is None else self.expectation.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RolloutPlan:
        """Rebuild a plan from `to_dict` output; RolloutError when the record is malformed."""
        try:
            base, expect = d.get("baseline"), d.get("expectation")
            return cls(
                rollout_id=str(d["rollout_id"]),
                candidate=str(d["candidate"]),
                incumbent=str(d["incumbent"]),
                stages=tuple(StagePlan.from_dict(s) for s in d["stages"]),
                limits=HealthLimits.from_dict(d["limits"]),
                baseline=None if base is None else Scoring.from_dict(base),
                expectation=None if expect is None else Expectation.from_dict(expect),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RolloutError(f"malformed rollout plan: {exc!r}") from exc


def plan_rollout(
    devices: Mapping[str, str | None] | Iterable[str],
    *,
    rollout_id: str,
    candidate: str,
    incumbent: str,
    seed: int,
    canary: float | Sequence[str] = 0.1,
    shadow: bool | float | Sequence[str] = False,
    policies: Mapping[StageName, StagePolicy] | None = None,
    limits: HealthLimits | None = None,
    baseline: Scoring | None = None,
    expectation: Expectation | None = None,
) -> RolloutPlan:
    """Plan shadow (optional) → canary → fleet over `devices` (a device → cohort mapping, or just ids).

    `canary` is a fraction of the fleet (at least one device, at most all but one) or an explicit list;
    a one-device fleet has no canary stage. `shadow` is False (no shadow stage), True (shadow on the canary
    devices first), a fraction of the fleet, or an explicit list. Same arguments, same plan.

    >>> fleet = {"p1": "a", "p2": "a", "p3": "a", "f1": "b", "f2": "b"}
    >>> plan = plan_rollout(fleet, rollout_id="r1", candidate="v2", incumbent="v1", seed=3, canary=0.4)
    >>> [s.name for s in plan.stages], sorted(fleet[d] for d in plan.stage("canary").devices)
    (['canary', 'fleet'], ['a', 'b'])
    """
    cohorts: dict[str, str | None] = dict(devices) if isinstance(devices, Mapping) else dict.fromkeys(devices)
    if not cohorts:
        raise RolloutError("a rollout needs at least one device")
    pol = {**DEFAULT_POLICIES, **(policies or {})}
    fleet = tuple(sorted(cohorts))
    n = len(fleet)

    canary_devices: tuple[str, ...] | None
    if isinstance(canary, float | int):
        if not 0.0 < canary < 1.0:
            raise RolloutError(f"a canary fraction lies strictly between 0 and 1, got {canary}")
        k = min(max(1, math.ceil(canary * n)), n - 1)
        canary_devices = pick(cohorts, k, seed=seed, salt="canary") if k >= 1 else None
    else:
        canary_devices = _explicit(canary, cohorts, "canary")

    shadow_devices: tuple[str, ...] | None
    if isinstance(shadow, bool):
        shadow_devices = (canary_devices or fleet) if shadow else None
    elif isinstance(shadow, float | int):
        if not 0.0 < shadow <= 1.0:
            raise RolloutError(f"a shadow fraction lies in (0, 1], got {shadow}")
        shadow_devices = pick(cohorts, max(1, math.ceil(shadow * n)), seed=seed, salt="shadow")
    else:
        shadow_devices = _explicit(shadow, cohorts, "shadow")

    chosen: dict[StageName, tuple[str, ...] | None] = {
        "shadow": shadow_devices,
        "canary": canary_devices,
        "fleet": fleet,
    }
    stages = [StagePlan(name, devs, pol[name]) for name, devs in chosen.items() if devs]
    return RolloutPlan(
        rollout_id=rollout_id,
        candidate=candidate,
        incumbent=incumbent,
        stages=tuple(stages),
        limits=limits or HealthLimits(),
        baseline=baseline,
        expectation=expectation,
    )


def pick(cohorts: Mapping[str, str | None], k: int, *, seed: int, salt: str) -> tuple[str, ...]:
    """`k` devices, round-robin over cohorts (largest first), each cohort's devices in hash-rank order.

    >>> pick({"a1": "a", "a2": "a", "a3": "a", "b1": "b"}, 2, seed=0, salt="canary")
    ('a2', 'b1')
    """
    if not 0 <= k <= len(cohorts):
        raise RolloutError(f"cannot pick {k} of {len(cohorts)} devices")

    def rank(name: str) -> str:
        return hashlib.sha256(f"{seed}:{salt}:{name}".encode()).hexdigest()

    groups: dict[str, list[str]] = defaultdict(list)
    for device, cohort in cohorts.items():
        groups["" if cohort is None else cohort].append(device)
    order = sorted(groups, key=lambda c: (-len(groups[c]), rank("cohort:" + c)))
    queues = [sorted(groups[c], key=rank) for c in order]
    chosen: list[str] = []
    depth = 0
    while len(chosen) < k:
        chosen.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return tuple(sorted(chosen[:k]))


def _explicit(names: Sequence[str], cohorts: Mapping[str, str | None], what: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise RolloutError(f"{what} must be a fraction or a list of device ids, got {names!r}")
    unknown = sorted(set(names) - set(cohorts))
    if unknown:
        raise RolloutError(f"{what} devices not in the fleet: {unknown}")
    if not names:
        raise RolloutError(f"an explicit {what} list needs at least one device")
    return tuple(sorted(set(names)))

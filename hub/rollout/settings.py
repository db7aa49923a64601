"""Health limits as settings: validated defaults of every rollout plan (`HubSettings.rollout_limits`).

The constrained field types are shared with the API's per-rollout override, so both refuse the same values.
`HealthLimits` (a frozen dataclass) stays what the pure machine reads; `to_limits` builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.rollout.errors import RolloutError
from hub.rollout.plan import HealthLimits, StagePolicy

_D = HealthLimits()

LatencyMs = Annotated[float, Field(gt=0, le=60_000, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Psi = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Factor = Annotated[float, Field(ge=1, le=10_000, allow_inf_nan=False)]
Floor = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Windows = Annotated[int, Field(ge=1, le=10**9)]


class HealthLimitsSettings(BaseModel):
    """What a healthy rollout stage looks like (see `hub.rollout.HealthLimits` for why the defaults)."""

    model_config = ConfigDict(extra="forbid")

    latency_p99_ms: LatencyMs = Field(default=_D.latency_p99_ms, description="p99 latency budget (ms) per device")
    max_error_rate: Share = Field(default=_D.max_error_rate, description="inference errors per window tolerated")
    max_score_psi: Psi = Field(default=_D.max_score_psi, description="score-distribution PSI vs the yardstick "
                               "(control, or the candidate's own expectation when the control drifted) before holding")
    anomaly_rate_factor: Factor = Field(default=_D.anomaly_rate_factor, description="anomaly rate this many "
                                        "times off the yardstick's (either way) holds the stage")
    rollback_anomaly_factor: Factor = Field(default=_D.rollback_anomaly_factor, description="anomaly rate this "
                                            "many times off rolls back (fewer alarms than the candidate's own "
                                            "reference: holds until the timeout); at least anomaly_rate_factor")
    anomaly_rate_floor: Floor = Field(default=_D.anomaly_rate_floor, description="added to both rates before "
                                      "their ratio, so 0 vs 1 anomaly is not a factor of infinity")
    max_disagreement: Share = Field(default=_D.max_disagreement, description="share of shadow windows the two "
                                    "models may decide differently")
    min_rate_windows: Windows = Field(default=_D.min_rate_windows, description="windows each side needs before "
                                      "rates and histograms are compared")
    min_traffic_samples: Windows = Field(default=_D.min_traffic_samples, description="random-slice feature vectors "
                                         "of the stage's traffic the candidate is scored on before its scores there "
                                         "stand in for its reference (control not trusted)")
    estimate_max_drop: Share = Field(default=_D.estimate_max_drop, description="the candidate's label-free recall "
                                     "or F1 on the stage's traffic this far below its gate-time figures holds the "
                                     "stage (never rolls back by itself)")

    @model_validator(mode="after")
    def _factors(self) -> HealthLimitsSettings:
        if self.anomaly_rate_factor > self.rollback_anomaly_factor:
            raise ValueError(f"anomaly_rate_factor ({self.anomaly_rate_factor:g}) must not exceed "
                             f"rollback_anomaly_factor ({self.rollback_anomaly_factor:g})")
        return self

    def to_limits(self) -> HealthLimits:
        """The frozen limits the rollout machine reads."""
        return HealthLimits(**self.model_dump())


class StagePolicySettings(BaseModel):
    """The hub's default policy of one stage (`hub.rollout.StagePolicy`; `DEFAULT_POLICIES` when unset)."""

    model_config = ConfigDict(extra="forbid")

    min_duration_s: float = Field(ge=0, le=30 * 86400, allow_inf_nan=False)
    min_windows: int = Field(ge=0, le=10**9)
    timeout_s: float = Field(gt=0, le=30 * 86400, allow_inf_nan=False)
    min_reporting: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> StagePolicySettings:
        if self.min_duration_s >= self.timeout_s:
            raise ValueError(f"min_duration_s ({self.min_duration_s:g}) must be below timeout_s ({self.timeout_s:g})")
        return self

    def to_policy(self) -> StagePolicy:
        return StagePolicy(self.min_duration_s, self.min_windows, self.timeout_s, self.min_reporting)


def override_limits(base: HealthLimits, overrides: Mapping[str, object]) -> HealthLimits:
    """`base` with some limits replaced, validated as settings are; RolloutError saying what is wrong.

    >>> override_limits(HealthLimits(), {"rollback_anomaly_factor": "10"}).rollback_anomaly_factor
    10.0
    >>> override_limits(HealthLimits(), {"anomaly_rate_factor": 8, "colour": 3})
    Traceback (most recent call last):
    hub.errors.RolloutError: invalid health limits: colour: Extra inputs are not permitted
    """
    try:
        return HealthLimitsSettings.model_validate({**base.to_dict(), **overrides}).to_limits()
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "") + e["msg"].removeprefix(
            "Value error, ") for e in exc.errors(include_url=False)]
        raise RolloutError("invalid health limits: " + "; ".join(problems)) from None


__all__ = ["Factor", "Floor", "HealthLimitsSettings", "LatencyMs", "Psi", "Share", "StagePolicySettings", "Windows",
           "override_limits"]

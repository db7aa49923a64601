"""Injectable drift: deterministic changes to a machine's readings from a given step on.

A drift never consumes randomness, so a machine with drifts gives exactly the readings of the same machine
without them before ``start_t``, and the same underlying draws after it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator

from sim.physics import SENSORS


class _Drift(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start_t: int = Field(ge=0, description="first step (inclusive) the drift affects")


class SensorOffset(_Drift):
    """A sensor reads ``offset`` higher from ``start_t`` on, as after a bad recalibration."""

    kind: Literal["sensor_offset"] = "sensor_offset"
    sensor: str
    offset: FiniteFloat

    @field_validator("sensor")
    @classmethod
    def _known(cls, sensor: str) -> str:
        if sensor not in SENSORS:
            raise ValueError(f"unknown sensor {sensor!r}; expected one of {', '.join(SENSORS)}")
        return sensor


class NewRegime(_Drift):
    """From ``start_t`` the machine runs at a load level it never ran at before (regime id ``regime``)."""

    kind: Literal["new_regime"] = "new_regime"
    load: FiniteFloat = Field(default=1.6, gt=0.0, le=3.0)
    regime: int = Field(default=3, ge=0)


class SeasonalTemperature(_Drift):
    """Temperature gains ``amplitude * sin(2π (t - start_t) / period)`` from ``start_t`` on."""

    kind: Literal["seasonal_temperature"] = "seasonal_temperature"
    amplitude: FiniteFloat
    period: int = Field(ge=2)


Drift = Annotated[SensorOffset | NewRegime | SeasonalTemperature, Field(discriminator="kind")]

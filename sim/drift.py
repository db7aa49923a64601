"""Injectable drift: deterministic changes to a machine's readings from a given step on.

A drift never consumes randomness, so a machine with drifts gives exactly the readings of the same machine
without them before ``start_t``, and the same underlying draws after it.

Drifts are msgspec structs tagged by ``kind`` (``msgspec.convert(data, Drift)`` reads one from plain data,
``shared.wire.to_json_data`` writes it); one built in code is checked as decoding checks it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.wire import check_fields, finite
from sim.physics import SENSORS

_NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _Drift(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    start_t: Annotated[int, msgspec.Meta(ge=0, description="first step (inclusive) the drift affects")]

    @property
    def kind(self) -> str:
        """The drift's tag (``sensor_offset``, …), as in its plain data."""
        return str(self.__struct_config__.tag)

    def __post_init__(self) -> None:
        check_fields(self)
        finite([getattr(self, name) for name in self.__struct_fields__ if isinstance(getattr(self, name), float)],
               f"{self.kind} values")


class SensorOffset(_Drift, frozen=True, tag="sensor_offset"):
    """A sensor reads ``offset`` higher from ``start_t`` on, as after a bad recalibration."""

    sensor: str
    offset: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sensor not in SENSORS:
            raise ValueError(f"unknown sensor {self.sensor!r}; expected one of {', '.join(SENSORS)}")


class NewRegime(_Drift, frozen=True, tag="new_regime"):
    """From ``start_t`` the machine runs at a load level it never ran at before (regime id ``regime``)."""

    load: Annotated[float, msgspec.Meta(gt=0.0, le=3.0)] = 1.6
    regime: _NonNegative = 3


class SeasonalTemperature(_Drift, frozen=True, tag="seasonal_temperature"):
    """Temperature gains ``amplitude * sin(2π (t - start_t) / period)`` from ``start_t`` on."""

    amplitude: float
    period: Annotated[int, msgspec.Meta(ge=2)]




class NewFailureMode(_Drift, frozen=True, tag="new_failure_mode"):
    """From ``start_t`` the machine's failures look different: a fault v1 never saw fail.

    Over the last `span` readings of every life (the failing period, from ``start_t`` on), the usual wear stops
    progressing (vibration, temperature, pressure, flow and speed hold the level they had at the period's start) and
    the motor current hunts instead: a slow harmonic of `period` readings whose amplitude grows from 0 to
    `amplitude` amperes (× the asset's current scale) as the failure nears (as the square root of the time into the
    period: soon clear, then slowly worse), as a cracked rotor bar shows. Readings outside failing periods are
    untouched: with `span` at most the model's failure horizon, a window of healthy operation reads exactly as
    without the fault, so healthy operation's distribution does not change.
    """

    span: Annotated[int, msgspec.Meta(ge=2, le=10_000, description="readings before the failure it shows in")] = 100
    amplitude: Annotated[float, msgspec.Meta(gt=0.0, le=100.0, description="A, at the failure")] = 4.0
    period: Annotated[int, msgspec.Meta(ge=2, le=10_000, description="readings per current oscillation")] = 12


Drift = SensorOffset | NewRegime | SeasonalTemperature | NewFailureMode

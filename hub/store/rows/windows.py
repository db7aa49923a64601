"""Rows of raw sensor windows: what the hub asked a device for, and what came back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RawWindowState = Literal["requested", "stored", "unavailable"]


@dataclass(frozen=True, slots=True)
class RawWindowRow:
    """The raw window of one trace: ``requested`` (asked, nothing back yet), ``stored`` (the readings), or
    ``unavailable`` (the device no longer keeps it, or never answered). `values[i]` is sensor `sensors[i]` at each
    of `timestamps`."""

    trace_id: str
    device_id: str
    state: RawWindowState
    requested_ts: float
    asks: int
    received_ts: float | None = None
    unit: str | None = None
    sensors: tuple[str, ...] = ()
    timestamps: tuple[float, ...] = ()
    values: tuple[tuple[float, ...], ...] = ()
    service: int | None = None  # feature set 2: readings before the first here (`shared.messages.RawWindow`)

"""Devices no rollout speaks for that do not serve the active version: late joiners and leftovers.

A device that comes online after a rollout completed (or was never in one) keeps whatever model it booted
with; the hub assigns it the registry's active version. Devices of a running rollout are the machine's.
An assignment is re-sent to a device that still reports another version only every `resync_s` (`due`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Protocol


class Presence(Protocol):
    """What the device registry knows of a device (`hub.store.Device` has it): presence and what it serves."""

    @property
    def device_id(self) -> str: ...

    @property
    def online(self) -> bool: ...

    @property
    def model_version(self) -> str | None: ...

    @property
    def shadow_version(self) -> str | None: ...


def stragglers(devices: Iterable[Presence], active: str | None, covered: Collection[str] = ()) -> tuple[str, ...]:
    """Online devices outside `covered` (a running rollout's fleet) that serve something other than `active`
    alone: another version, no version, or `active` with a candidate still in shadow. Sorted.

    >>> from types import SimpleNamespace as D
    >>> fleet = [D(device_id="a", online=True, model_version="v1", shadow_version=None),
    ...          D(device_id="b", online=True, model_version="v2", shadow_version=None),
    ...          D(device_id="c", online=False, model_version="v1", shadow_version=None)]
    >>> stragglers(fleet, "v2"), stragglers(fleet, "v2", covered={"a"}), stragglers(fleet, None)
    (('a',), (), ())
    """
    if active is None:
        return ()
    return tuple(sorted(
        d.device_id for d in devices
        if d.online and d.device_id not in covered and (d.model_version != active or d.shadow_version is not None)
    ))


def due(
    devices: Iterable[str], sent: Mapping[str, tuple[str, float]], msg_id: str, now: float, resync_s: float | None
) -> list[str]:
    """The `devices` to send assignment `msg_id` now: those not sent it (`sent`: device → msg_id and time of
    the last assignment sent) or, with `resync_s`, sent it at least `resync_s` ago. A device still swapping to
    what it was just sent needs no second copy.

    >>> due(["a", "b", "c"], {"a": ("m", 90.0), "b": ("m", 10.0), "c": ("old", 99.0)}, "m", 100.0, 60.0)
    ['b', 'c']
    """
    return [d for d in devices if (last := sent.get(d)) is None or last[0] != msg_id
            or (resync_s is not None and now - last[1] >= resync_s)]

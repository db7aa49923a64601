"""The story's timeline: events in time order, phases with durations, a movable origin."""

from __future__ import annotations

import doctest
import time

import pytest

import fleetloop.story.timeline
from fleetloop.story.timeline import Event, Timeline


def test_doctests() -> None:
    assert doctest.testmod(fleetloop.story.timeline).failed == 0


def test_phases_listeners_and_late_events() -> None:
    heard: list[Event] = []
    now = time.time()
    tl = Timeline(origin=now - 100)
    tl.listeners.append(heard.append)
    tl.add("setup", "broker", at=now - 105)
    with tl.phase("drift", "the drift"):
        tl.add("drift_detected", "seen", features=["a"])
    tl.add("gate", "decided earlier", at=now - 50)
    assert [e.kind for e in tl.events] == ["setup", "gate", "phase_start", "drift_detected", "phase_end"]  # by time
    assert [e.kind for e in heard] == ["setup", "phase_start", "drift_detected", "phase_end", "gate"]
    ((name, title, start, end),) = tl.phases()
    assert (name, title) == ("drift", "the drift") and end is not None and end >= start >= 100
    tl.rebase(now - 110)
    first = tl.first("setup")
    assert first is not None and first.t == pytest.approx(5.0)
    assert tl.to_json()[0]["t"] == 5.0 and tl.all("gate")[0].data == {}

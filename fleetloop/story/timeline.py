"""The story's timeline: what happened when (wall clock), with the numbers, for the console, summary and report.

>>> tl = Timeline(origin=100.0)
>>> tl.add("drift_detected", "fleet drift on vibration.mean", at=112.5, features=["vibration.mean"]).t
12.5
>>> tl.first("drift_detected").data["features"], tl.first("rollback") is None
(['vibration.mean'], True)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Event", "Timeline"]


@dataclass(frozen=True)
class Event:
    """One thing that happened: `kind` (``phase_start``, ``drift_detected``, ``gate``…), when, and its numbers."""

    at: float  # unix time
    t: float  # seconds since the story's origin
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 2), "at": self.at, "kind": self.kind, "message": self.message, "data": self.data}


class Timeline:
    """Events in the order they were recorded; listeners (the console) hear each one as it is added."""

    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.time() if origin is None else origin
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self.listeners: list[Callable[[Event], None]] = []

    def add(self, kind: str, message: str, *, at: float | None = None, **data: Any) -> Event:
        at = time.time() if at is None else at
        event = Event(at, at - self.origin, kind, message, data)
        with self._lock:
            self._events.append(event)
        for listener in list(self.listeners):
            listener(event)
        return event

    def rebase(self, origin: float) -> None:
        """Move the origin (events keep their time; their `t` is recomputed)."""
        with self._lock:
            self.origin = origin
            self._events = [replace(e, t=e.at - origin) for e in self._events]

    @contextmanager
    def phase(self, name: str, title: str) -> Iterator[None]:
        """Record the start and the end (with its duration) of a story phase."""
        start = self.add("phase_start", title, phase=name)
        try:
            yield
        finally:
            end = time.time()
            self.add("phase_end", f"{title}: done in {end - start.at:.1f} s", at=end, phase=name,
                     duration_s=round(end - start.at, 2))

    @property
    def events(self) -> list[Event]:
        """In time order (an event may be recorded after the fact, with the time it happened)."""
        with self._lock:
            return sorted(self._events, key=lambda e: e.at)

    def first(self, kind: str) -> Event | None:
        return next((e for e in self.events if e.kind == kind), None)

    def all(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def phases(self) -> list[tuple[str, str, float, float | None]]:
        """(name, title, start t, end t or None) of every phase, in order."""
        out: list[tuple[str, str, float, float | None]] = []
        ends = {e.data["phase"]: e.t for e in self.events if e.kind == "phase_end"}
        for e in self.events:
            if e.kind == "phase_start":
                out.append((e.data["phase"], e.message, e.t, ends.get(e.data["phase"])))
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events]

"""What the agent exchanges with the hub between two windows: hub → device commands and assignments, traces the
hub asked for, and the drain on stop that waits for the hub's acknowledgements.

Runs in the agent loop's thread (paho's network thread only queues what arrives); a bad message is logged and
dropped, never fatal.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from agent.db import PRIORITY_MODEL_EVENT
from shared.codec import decode
from shared.errors import FleetloopError
from shared.messages import MAX_WINDOW_VALUES, Assign, Command, RawWindow, Sample, window_numbers
from shared.topics import Kind

if TYPE_CHECKING:
    from agent.runtime import Agent

log = logging.getLogger(__name__)

DRAIN_HUB_ACK_S = 2.0  # on stop, once the broker has every row: how long without a hub ack before giving up
MAX_RANGE_TRACES = 10_000  # the most logged windows one ranged upload_traces command queues (Command.trace_ids' limit)


class Exchange:
    """The agent's side of the conversation with the hub (its link, outbox and model manager)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def drain(self, seconds: float) -> None:
        """Give the outbox up to `seconds` to empty before stopping (what remains is sent next start)."""
        if self.agent.forwarder is None or self.agent.link is None:
            return
        end = time.time() + seconds
        quiet_since, last_size = 0.0, -1  # every row with the broker, and no hub ack since then: stop waiting
        while time.time() < end:
            self.receive()
            self.agent.forwarder.pump(time.time())
            size = self.agent.db.outbox_size()
            if size == 0:
                return
            if self.agent.forwarder.inflight == 0 and self.agent.db.awaiting_hub() == size and size >= last_size >= 0:
                quiet_since = quiet_since or time.time()
                if time.time() - quiet_since >= DRAIN_HUB_ACK_S:
                    break
            else:
                quiet_since = 0.0
            last_size = size
            time.sleep(0.02)
        log.info("stopping with %d messages still in the outbox (%d with the broker, not yet acknowledged by the "
                 "hub)", self.agent.db.outbox_size(), self.agent.db.awaiting_hub())

    def receive(self) -> None:
        """Handle hub → device messages; a bad one is logged and dropped, never fatal."""
        assert self.agent.link is not None
        while not self.agent.link.inbound.empty():
            kind, payload = self.agent.link.inbound.get_nowait()
            try:
                if kind is Kind.CMD:
                    self.command(decode(Command, payload))
                elif kind is Kind.ASSIGN:
                    if payload:  # an empty retained message clears the assignment: keep serving
                        self.agent.models.on_assign(decode(Assign, payload), time.time())
                else:
                    log.warning("ignored a %s message: not a hub → device kind", kind.value)
            except FleetloopError as exc:
                self.agent.counters.extra["bad_inbound"] = self.agent.counters.extra.get("bad_inbound", 0) + 1
                log.warning("dropped a %s message: %s", kind.value, exc)

    def command(self, command: Command) -> None:
        if command.cmd == "upload_traces":
            self.agent.commit()
            trace_ids = list(command.trace_ids)
            if command.start_ts is not None and command.end_ts is not None:
                trace_ids += self.unreported(command.start_ts, command.end_ts)
            sent = self.upload_traces(trace_ids)
            log.info("hub asked for %d traces; %d found and queued", len(trace_ids), sent)
        elif command.cmd == "upload_windows":
            self.agent.commit()
            found = self.upload_windows(command.trace_ids)
            log.info("hub asked for %d raw windows; %d found and queued", len(command.trace_ids), found)
        elif command.cmd in ("ack", "resend") and self.agent.forwarder is not None:
            ranges = [(lo, hi) for lo, hi in command.seq_ranges]
            if command.cmd == "ack":
                self.agent.forwarder.hub_acked(ranges)
            else:
                self.agent.forwarder.resend(ranges, time.time())
        elif command.cmd == "rollback":
            log.info("the hub asked for a rollback")
            self.agent.models.on_rollback_command(time.time())

    def unreported(self, start_ts: float, end_ts: float) -> list[str]:
        """Trace ids of the logged predictions whose window ends in ``[start_ts, end_ts]`` (the machine's time, as
        the hub joins a range) that were not reported when scored (at most `MAX_RANGE_TRACES`, the oldest first):
        the windows of a range annotation the hub lacks."""
        rows = self.agent.db.query("SELECT trace_id FROM predictions WHERE window_end BETWEEN ? AND ? "
                                   "AND reported IS NULL ORDER BY ts LIMIT ?", [start_ts, end_ts, MAX_RANGE_TRACES])
        return [str(r["trace_id"]) for r in rows]

    def upload_traces(self, trace_ids: list[str]) -> int:
        """Queue the logged predictions with these trace ids (with features) for the hub, as of when they were made."""
        messages = []
        for trace_id in trace_ids:
            row = self.agent.db.prediction(trace_id)
            if row is None or row["score"] is None:
                continue
            features = np.frombuffer(row["features"], dtype=np.float32)
            message = Sample(
                device_id=self.agent.device_id, ts=row["ts"], model_version=row["model_version"], trace_id=trace_id,
                window_start=row["window_start"], window_end=row["window_end"], unit=row["unit"],
                score=row["score"], threshold=self.agent.model.threshold, decision=bool(row["decision"]),
                features=features.tolist(), reason="requested",
            )
            messages.append(self.agent.outbox_message(message, Kind.SAMPLE, PRIORITY_MODEL_EVENT))
        self.agent.db.enqueue(messages)
        return len(messages)

    def upload_windows(self, trace_ids: list[str]) -> int:
        """Queue the raw window of each trace id (``available=False`` for one this device no longer keeps);
        return how many were found."""
        messages, found = [], 0
        for trace_id in trace_ids:
            message = self.raw_window(trace_id)
            found += message.available
            messages.append(self.agent.outbox_message(message, Kind.WINDOW, PRIORITY_MODEL_EVENT))
        self.agent.db.enqueue(messages)
        return found

    def raw_window(self, trace_id: str) -> RawWindow:
        """The stored raw window of `trace_id` as a message (columns per sensor, and under feature set 2 the count
        of the unit's readings before the first), or one saying it is not here. A feature set 2 window's context
        readings were already cut to what one message carries when it was kept (`RegimePipeline.keep`); a window
        too large by itself is refused with a warning."""
        row = self.agent.db.raw_window(trace_id)
        now = time.time()
        if row is None:
            return RawWindow(device_id=self.agent.device_id, ts=now, trace_id=trace_id, available=False)
        sensors = json.loads(row.sensors)
        readings = np.frombuffer(row.readings, dtype="<f8").reshape(-1, len(sensors))
        if window_numbers(*readings.shape[::-1]) > MAX_WINDOW_VALUES:  # more than one message may carry: say so
            log.warning("raw window %s holds %d readings of %d sensors, more than one message carries: not sent",
                        trace_id, readings.shape[0], readings.shape[1])
            return RawWindow(device_id=self.agent.device_id, ts=now, trace_id=trace_id, unit=row.unit,
                             available=False)
        return RawWindow(
            device_id=self.agent.device_id, ts=now, model_version=self.agent.model.version, trace_id=trace_id,
            unit=row.unit, sensors=sensors, timestamps=np.frombuffer(row.times, dtype="<f8").tolist(),
            values=readings.T.tolist(), service=row.service,
        )

"""A sensor source fed by an MQTT topic carrying JSON readings.

Payload: ``{"ts": 1700000000.5, "values": {"temp": 71.2, "rpm": null}, "unit": "pump-3"}``; ``unit`` is
optional, a sensor that is null or absent reads NaN and unknown sensors are ignored. A payload that
breaks this shape, a value beyond float32's range or a unit name that is too long, not UTF-8 or has control
characters is counted in `bad_rows` and logged (rate-limited), never raised from paho's network
thread. Readings wait in a bounded queue; when the agent falls behind the oldest are dropped and counted
in `dropped`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeGuard

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.sources.base import Reading, unit_problem, value_problem
from infra.mqtt import build_client, close_client
from shared.errors import SourceError

log = logging.getLogger(__name__)

_LOG_FIRST = 5  # bad payloads logged one by one; after that only every _LOG_EVERY-th
_LOG_EVERY = 1000


class MqttSource:
    """Subscribes to `topic` (MQTT 5, QoS `qos`) and yields one reading per valid JSON payload.

    paho reconnects on its own and the subscription is renewed on every connect. With a `client_id`
    and `session_expiry` > 0 the broker keeps the session, so readings published while the agent is
    briefly away are delivered when it returns.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        sensors: Iterable[str],
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        tls_ca: str | None = None,
        qos: int = 1,
        max_queue: int = 10_000,
        session_expiry: int = 0,
        keepalive: int = 30,
    ) -> None:
        self.sensors = list(sensors)
        if not self.sensors or len(set(self.sensors)) != len(self.sensors):
            raise SourceError(f"an MQTT source needs distinct sensor names, got {self.sensors}")
        if max_queue < 1:
            raise SourceError("max_queue must be at least 1")
        if session_expiry and not client_id:
            raise SourceError("a persistent MQTT session (session_expiry > 0) needs a fixed client_id")
        self.topic = topic
        self.qos = qos
        self.bad_rows = 0
        self.dropped = 0
        self.received = 0
        self._index = {name: i for i, name in enumerate(self.sensors)}
        self._queue: deque[Reading] = deque()
        self._max_queue = max_queue
        self._ready = threading.Condition()
        self._subscribed = threading.Event()
        self._closed = False

        try:
            client = build_client(client_id or "", username=username, password=password, tls_ca=tls_ca,
                                  logger=f"{__name__}.paho")
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot use TLS CA file {tls_ca}: {exc}") from None
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = None
        if session_expiry:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = session_expiry
        # connect_async + loop_start: an unreachable broker is retried in the background, never raised.
        client.connect_async(host, port, keepalive, clean_start=not session_expiry, properties=properties)
        client.loop_start()
        self._client = client

    @property
    def exhausted(self) -> bool:
        """An MQTT stream ends only when the source is closed and its queue drained."""
        with self._ready:
            return self._closed and not self._queue

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until the broker has granted the subscription (or `timeout` passes)."""
        return self._subscribed.wait(timeout)

    def read(self, timeout: float) -> Reading | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._ready:
            while not self._queue and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._ready.wait(remaining)
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        with self._ready:
            if self._closed:
                return
            self._closed = True
            self._ready.notify_all()
        close_client(self._client)

    # --- paho callbacks (network thread): log, count, never raise ------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.error("MQTT source: broker refused the connection: %s", reason_code)
            return
        client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.error("MQTT source: broker refused the subscription to %r: %s", self.topic, refused[0])
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._subscribed.clear()
        if not self._closed:
            log.warning("MQTT source: disconnected (%s); paho reconnects", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            reading = self._parse(message.payload)
        except Exception as exc:  # one bad payload is logged and dropped, never fatal
            self._bad(message.topic, f"{type(exc).__name__}: {exc}")
            return
        with self._ready:
            self.received += 1
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % _LOG_EVERY == 0:
                    log.warning("MQTT source: queue full (%d), dropped %d oldest readings so far",
                                self._max_queue, self.dropped)
            self._queue.append(reading)
            self._ready.notify()

    def _parse(self, payload: bytes | bytearray) -> Reading:
        doc = json.loads(payload)
        if not isinstance(doc, dict):
            raise ValueError("payload is not a JSON object")
        ts, values, unit = doc.get("ts"), doc.get("values"), doc.get("unit")
        if not _is_number(ts) or not math.isfinite(ts):
            raise ValueError(f"ts must be a finite number, got {ts!r}")
        if not isinstance(values, dict):
            raise ValueError("values must be an object of sensor -> number|null")
        problem = unit_problem(unit)  # too long, a lone surrogate (bytes that were not UTF-8), control characters
        if problem is not None:
            raise ValueError(problem)
        row = np.full(len(self.sensors), np.nan, dtype=np.float64)
        for name, value in values.items():
            at = self._index.get(name)
            if at is None or value is None:
                continue
            if not _is_number(value):
                raise ValueError(f"sensor {name!r} is not a number: {value!r}")
            row[at] = float(value)
        problem = value_problem(row)  # a finite value the float32 features would turn into inf
        if problem is not None:
            raise ValueError(problem)
        return Reading(ts=float(ts), values=row, unit=unit)

    def _bad(self, topic: str, why: str) -> None:
        self.bad_rows += 1
        if self.bad_rows <= _LOG_FIRST:
            log.warning("MQTT source: dropped a bad payload on %s (%s)%s", topic, why[:200],
                        f"; further ones are logged every {_LOG_EVERY}" if self.bad_rows == _LOG_FIRST else "")
        elif self.bad_rows % _LOG_EVERY == 0:
            log.warning("MQTT source: %d bad payloads dropped so far (latest: %s)", self.bad_rows, why[:200])


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)

"""Hub → device commands over MQTT, and the job that asks devices for traces annotations name."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from hub.app.health import ConnectionState
from hub.app.settings import HubSettings
from hub.labels.service import LabelSettings, missing_traces, range_predictions
from hub.store import HubStore
from infra.mqtt import build_client, close_client, hub_properties
from shared.codec import encode
from shared.messages import Assign, Command
from shared.topics import Kind, Topics

log = logging.getLogger(__name__)

MAX_TRACES_PER_COMMAND = 500
SCORED_PAST_ROWS = 200  # predictions looked at to tell whether a device has scored past a range's end


class CommandPublisher:
    """A small MQTT client for hub → device messages (QoS 1; devices keep persistent sessions)."""

    def __init__(self, settings: HubSettings, client_id: str = "fleetloop-hub-commands") -> None:
        self.topics = Topics(settings.prefix)
        client = build_client(client_id, username=settings.mqtt_username, password=settings.password,
                              tls_ca=str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()
        self._changed_at: float | None = None  # when the connection last came up or went down (for /health)
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self._unacked: list[mqtt.MQTTMessageInfo] = []
        self.client = client
        self.host, self.port, self.keepalive = settings.mqtt_host, settings.mqtt_port, settings.mqtt_keepalive

    def start(self, wait_s: float = 10.0) -> None:
        """Connect in the background; wait up to `wait_s` for the first connection (sends fail until then)."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        if not self.connected.wait(wait_s):
            log.warning("command publisher not connected to %s:%d yet; commands wait for the next pass",
                        self.host, self.port)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the command publisher: %s", reason)
            self._last_error = f"refused: {reason}"
        else:
            self._changed_at = time.time()
            self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.connected.is_set():
            self._changed_at, self._last_error = time.time(), f"disconnected: {reason}"
        self.connected.clear()

    def connection_state(self) -> ConnectionState:
        """Connected or not, since when, and why it last failed (``/health``)."""
        return ConnectionState(self.connected.is_set(), self._changed_at, self._last_error)

    def stop(self) -> None:
        close_client(self.client)

    def send(self, device_id: str, command: Command) -> bool:
        """Queue a command for a device; False when the client could not take it (it is retried later)."""
        if not self.connected.is_set():
            return False
        info = self.client.publish(self.topics.topic(device_id, Kind.CMD), encode(command), qos=1,
                                   properties=hub_properties())
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish to a hub topic (QoS 1, not retained), e.g. incident events for plant systems; False when not
        connected (the caller retries)."""
        if not self.connected.is_set():
            return False
        return self.client.publish(topic, payload, qos=1).rc == mqtt.MQTT_ERR_SUCCESS

    def assign(self, device_id: str, assign: Assign) -> bool:
        """Publish a device's model assignment RETAINED (QoS 1), so a device that connects later still gets it.

        False when the client is not connected (nothing is queued): the rollout service re-publishes on reconnect.
        """
        if not self.connected.is_set():
            return False
        info = self.client.publish(self.topics.topic(device_id, Kind.ASSIGN), encode(assign), qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        with self._lock:
            self._unacked = [i for i in self._unacked if not i.is_published()] + [info]
        return True

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the broker acknowledged every assignment published so far (before a short-lived CLI exits)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            pending, self._unacked = self._unacked, []
        for info in pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                info.wait_for_publish(remaining)
            except RuntimeError:  # the connection dropped before it went out
                return False
            if not info.is_published():
                return False
        return True

    def is_connected(self) -> bool:
        return self.connected.is_set()


class TraceRequester:
    """Asks devices to upload traces that annotations name but the hub has not stored (at most every `retry_s`),
    and the windows that range annotations cover (a maintenance log's "failed between t1 and t2", a missed failure):
    a device reports only some of its windows when it scores them, the rest stay in its log until asked for.

    A range is asked for when the hub first sees it. A device behind on its readings (a backlog) may not have
    scored the whole range yet: until the hub holds a window of that device ending after the range, the ask counts
    as partial, and the range is asked for again once it does. After that, again only after `retry_s` while the
    hub still holds none of its windows."""

    def __init__(self, store: HubStore, labels: LabelSettings, send: Callable[[str, Command], bool],
                 *, retry_s: float = 300.0) -> None:
        self.store = store
        self.labels = labels
        self.send = send
        self.retry_s = retry_s
        self._asked: dict[str, float] = {}
        self._range_asks: dict[str, tuple[float, bool]] = {}  # annotation id: (asked at, the device had scored past it)
        self.requested = 0
        self.ranges_requested = 0

    def run(self, now: float) -> int:
        """One pass; returns how many trace ids and ranges were requested."""
        by_device: dict[str, list[str]] = {}
        for missing in missing_traces(self.store, self.labels, now=now):
            if now - self._asked.get(missing.trace_id, -1e18) >= self.retry_s:
                by_device.setdefault(missing.device_id, []).append(missing.trace_id)
        sent = 0
        for device_id, trace_ids in by_device.items():
            for i in range(0, len(trace_ids), MAX_TRACES_PER_COMMAND):
                chunk = trace_ids[i : i + MAX_TRACES_PER_COMMAND]
                if self.send(device_id, Command(ts=time.time(), cmd="upload_traces", trace_ids=chunk)):
                    self._asked.update(dict.fromkeys(chunk, now))
                    sent += len(chunk)
        if sent:
            log.info("asked %d device(s) to upload %d trace(s) that annotations name", len(by_device), sent)
        self.requested += sent
        ranges = self._ranges(now)
        self.ranges_requested += ranges
        return sent + ranges

    def _ranges(self, now: float) -> int:
        sent = 0
        for a in self.store.annotations(since=now - self.labels.ttl_s):
            if a.trace_id is not None or a.start_ts is None or a.end_ts is None:
                continue
            asked = self._range_asks.get(a.annotation_id)
            if asked is not None:
                at, whole = asked
                if whole and (now - at < self.retry_s
                              or range_predictions(self.store, a.device_id, a.start_ts, a.end_ts)):
                    continue
                if not whole and not self._scored_past(a.device_id, a.end_ts):
                    continue
            whole = self._scored_past(a.device_id, a.end_ts)
            command = Command(ts=time.time(), cmd="upload_traces", start_ts=a.start_ts, end_ts=a.end_ts)
            if self.send(a.device_id, command):
                self._range_asks[a.annotation_id] = (now, whole)
                sent += 1
        if sent:
            log.info("asked devices to upload the windows of %d annotated time range(s)", sent)
        return sent

    def _scored_past(self, device_id: str, end_ts: float) -> bool:
        """Whether the hub holds a window of `device_id` ending after `end_ts` (the device has scored the range)."""
        rows = self.store.predictions(end_ts, math.inf, device_ids=[device_id], limit=SCORED_PAST_ROWS)
        return any(r.window_end > end_ts for r in rows)

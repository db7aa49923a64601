"""Watching a fleet from the hub's side of the broker: presence, predictions/s, anomalies and samples.

`FleetMonitor` subscribes as ``hub`` (plain, not shared, subscriptions) to every device → hub topic and
keeps a `DeviceTally` per device; `snapshot()` copies them into a `FleetSnapshot`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from infra.mqtt import build_client, close_client, message_property
from shared.codec import decode_topic, format_of
from shared.errors import ConfigError, DecodeError
from shared.messages import Anomaly, ModelEvent, Sample, Stats, Status
from shared.topics import DEFAULT_PREFIX, Kind, Topics

log = logging.getLogger(__name__)

WATCHED = (Kind.STATUS, Kind.ANOMALY, Kind.SAMPLE, Kind.STATS, Kind.MODEL_EVENT)


@dataclass
class DeviceTally:
    """What the hub side has seen of one device."""

    device_id: str
    online: bool = False
    ever_online: bool = False  # said online during this run (a retained status from before does not count)
    site: str | None = None
    asset_type: str | None = None
    model_version: str | None = None
    windows: int = 0  # from stats reports
    anomalies: int = 0  # anomaly messages, duplicates (QoS 1 redeliveries) dropped
    samples: int = 0
    stats_reports: int = 0
    model_events: list[str] = field(default_factory=list)
    rate: float = 0.0  # predictions/s in the last stats period
    rate_until: float = 0.0  # the rate is stale after this time


@dataclass(frozen=True)
class FleetSnapshot:
    at: float
    devices: tuple[DeviceTally, ...]
    rejected: int  # messages that failed to decode

    @property
    def online(self) -> int:
        return sum(d.online for d in self.devices)

    @property
    def ever_online(self) -> int:
        return sum(d.ever_online for d in self.devices)

    @property
    def predictions_per_s(self) -> float:
        return sum(d.rate for d in self.devices if d.online and d.rate_until >= self.at)

    def total(self, name: str) -> int:
        return sum(int(getattr(d, name)) for d in self.devices)

    def progress_line(self, elapsed_s: float) -> str:
        versions = sorted({d.model_version for d in self.devices if d.model_version})
        return (f"t+{elapsed_s:4.0f}s  online {self.online}/{len(self.devices)}  "
                f"predictions/s {self.predictions_per_s:6.1f}  windows {self.total('windows')}  "
                f"anomalies {self.total('anomalies')}  samples {self.total('samples')}  "
                f"model {','.join(versions) or '-'}")


class FleetMonitor:
    """A hub-side observer (plain, not shared, subscriptions) tallying what every device publishes."""

    def __init__(self, host: str, port: int, password: str, devices: Sequence[str], *,
                 prefix: str = DEFAULT_PREFIX, username: str = "hub") -> None:
        self.topics = Topics(prefix)
        self.host, self.port = host, port
        self.started_at = time.time()
        self._tallies = {d: DeviceTally(d) for d in devices}
        self._seen: deque[str] = deque(maxlen=100_000)
        self._seen_set: set[str] = set()
        self._rejected = 0
        self._lock = threading.Lock()
        self._answered = threading.Event()  # CONNACK received, accepted or not
        self._reason: Any = None
        self._subscribed = threading.Event()
        client = build_client(f"fleetloop-monitor-{uuid.uuid4().hex[:8]}", username=username, password=password)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        self.client = client

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; ConfigError if the broker cannot be reached or refuses the login."""
        self.started_at = time.time()
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise ConfigError(f"cannot reach the broker at {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.client.loop_start()
        answered = self._answered.wait(timeout)
        if not answered or self._reason.is_failure or not self._subscribed.wait(timeout):
            self.stop()
            refused = answered and self._reason.is_failure
            why = f"refused: {self._reason}" if refused else f"no answer in {timeout:.0f} s"
            raise ConfigError(f"the broker at {self.host}:{self.port} did not let the monitor in ({why})")

    def stop(self) -> None:
        close_client(self.client)

    def snapshot(self, now: float | None = None) -> FleetSnapshot:
        with self._lock:
            devices = tuple(DeviceTally(**{**vars(t), "model_events": list(t.model_events)})
                            for t in self._tallies.values())
            return FleetSnapshot(time.time() if now is None else now, devices, self._rejected)

    def wait_offline(self, timeout: float) -> bool:
        """Wait until every device has said offline (after a clean stop); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.snapshot().online:
                return True
            time.sleep(0.05)
        return False

    # paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._reason = reason
        self._answered.set()
        if not reason.is_failure:  # also after an automatic reconnect
            client.subscribe([(self.topics.all_devices(kind), 1) for kind in WATCHED])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            fmt = format_of(message_property(message, "content_type"))  # agents send MessagePack to a hub that takes it
            decoded = decode_topic(self.topics, message.topic, bytes(message.payload), fmt=fmt)
            with self._lock:
                self._tally(decoded)
        except DecodeError as exc:
            with self._lock:
                self._rejected += 1
            log.warning("dropped a message on %s: %s", message.topic, exc)
        except Exception:  # one bad message must never stop the monitor
            log.exception("could not tally a message on %s", message.topic)

    def _tally(self, msg: Any) -> None:
        tally = self._tallies.get(msg.device_id)
        if tally is None:  # a device of another run on a reused broker
            return
        if msg.model_version:
            tally.model_version = msg.model_version
        if isinstance(msg, Status):
            tally.online = msg.state == "online"
            tally.ever_online |= tally.online and msg.ts >= self.started_at - 1.0
            tally.site, tally.asset_type = msg.site or tally.site, msg.asset_type or tally.asset_type
        elif isinstance(msg, Stats):
            tally.stats_reports += 1
            tally.windows += msg.windows
            period = max(msg.period_end - msg.period_start, 1e-3)
            tally.rate, tally.rate_until = msg.windows / period, msg.period_end + 2 * period + 1.0
        elif isinstance(msg, ModelEvent):
            tally.model_events.append(f"{msg.event}:{msg.version}")
        elif isinstance(msg, Anomaly | Sample) and self._first_time(msg.msg_id):
            if isinstance(msg, Anomaly):
                tally.anomalies += 1
            else:
                tally.samples += 1

    def _first_time(self, msg_id: str) -> bool:
        if msg_id in self._seen_set:
            return False
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(msg_id)
        self._seen_set.add(msg_id)
        return True

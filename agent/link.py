"""The agent's MQTT connection: presence with a retained last will, QoS 1 publishing, hub → device topics.

paho runs its network loop in its own thread; everything that crosses into the agent's thread goes
through thread-safe queues, and every inbound callback is wrapped so a bad message is logged, never fatal.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from infra.mqtt import build_client, close_client, message_property, publish_properties
from shared.codec import ACCEPTS_PROPERTY, CONTENT_TYPES, WireFormat, accepted_formats, encode
from shared.messages import Status
from shared.topics import Kind, Topics

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600


class Link:
    """One device's MQTT session.

    `acked` receives the mid of every publish the broker acknowledged; `inbound` receives
    ``(kind, payload)`` for hub → device messages. `wire_format()` is the format outbox messages go in: with
    ``"auto"``, MessagePack while the latest hub command (acks are commands) said the hub decodes it
    (`shared.codec.ACCEPTS_PROPERTY`), JSON before any and after one that did not (an older hub took over).
    Retained model assignments are not asked: one can outlive the hub that published it.
    """

    def __init__(
        self,
        *,
        device_id: str,
        topics: Topics,
        host: str,
        port: int,
        username: str,
        password: str | None,
        keepalive: int = 30,
        tls_ca: str | None = None,
        status_fields: Callable[[], dict[str, Any]] = dict,
        wire_format: Literal["auto", "json", "msgpack"] = "auto",
    ) -> None:
        self.device_id = device_id
        self.topics = topics
        self.host, self.port, self.keepalive = host, port, keepalive
        self.status_fields = status_fields
        self.wire_format_setting = wire_format
        self.hub_accepts: frozenset[WireFormat] | None = None  # None until a hub command arrived (network thread)
        self.acked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.inbound: queue.SimpleQueue[tuple[Kind, bytes]] = queue.SimpleQueue()
        self.connected = threading.Event()
        self.connected_since = 0.0
        self.connects = 0
        client = build_client(device_id, username=username, password=password, tls_ca=tls_ca, reconnect_max_s=8)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        offline = Status(device_id=device_id, ts=time.time(), state="offline")
        client.will_set(topics.topic(device_id, Kind.STATUS), encode(offline), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Say offline (retained) and disconnect cleanly."""
        if self.connected.is_set():
            info = self.publish_status("offline")
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        close_client(self.client)

    def is_connected(self) -> bool:
        return self.connected.is_set() and self.client.is_connected()

    def wire_format(self) -> WireFormat:
        """The format outbox messages go in now (see the class docstring)."""
        if self.wire_format_setting != "auto":
            return self.wire_format_setting
        accepts = self.hub_accepts
        return "msgpack" if accepts is not None and "msgpack" in accepts else "json"

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                fmt: WireFormat = "json") -> mqtt.MQTTMessageInfo:
        """Publish `payload`, encoded in `fmt`: MessagePack with its MQTT 5 content type, JSON without one (what no
        content type means, and the hub's paho parses every property of every message in Python)."""
        props = None if fmt == "json" else publish_properties(content_type=CONTENT_TYPES[fmt])
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def publish_status(self, state: str = "online") -> mqtt.MQTTMessageInfo:
        status = Status(device_id=self.device_id, ts=time.time(), state=state, **self.status_fields())  # type: ignore[arg-type]
        return self.publish(self.topics.topic(self.device_id, Kind.STATUS), encode(status), retain=True)

    # -- paho callbacks (network thread) ---------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self.connects += 1
        self.connected_since = time.time()
        self.connected.set()
        log.info("connected to %s:%d", self.host, self.port)
        for topic in self.topics.device_subscriptions(self.device_id):
            client.subscribe(topic, qos=1)
        try:
            self.publish_status("online")
        except Exception:  # never let a status problem break the connection callback
            log.exception("could not publish status")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s", reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acked.put(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            parsed = self.topics.parse(message.topic)
            if parsed.kind is Kind.CMD:
                self.hub_accepts = accepted_formats(message_property(message, ACCEPTS_PROPERTY))
            self.inbound.put((parsed.kind, bytes(message.payload)))
        except Exception as exc:
            log.warning("dropped a message on %s: %s", message.topic, exc)

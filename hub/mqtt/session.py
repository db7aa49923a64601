"""The ingest worker's paho connection: an MQTT 5 persistent session, shared subscriptions and manual acks.

The client runs with ``manual_ack``: nothing is acknowledged until `IngestSession.ack` is called for it (after
its batch committed). With a stable `client_id` and a persistent session (``clean_start=False``,
`session_expiry_s`), the broker redelivers what was not acknowledged when a worker comes back with the same id.
paho reconnects on its own; each connection is a new *generation*, and a PUBACK is only sent on the connection
its message arrived on.

Several workers with the same `share_group` split the traffic (MQTT 5 shared subscriptions). Shared
subscriptions get no retained messages (MQTT 5; mosquitto 2.0 sends them anyway), so each session also
subscribes to the status topics directly (subscription identifier `SNAPSHOT_SUB_ID`) and keeps only the
*retained* statuses from it: the presence snapshot at startup. Live statuses are taken from the shared
subscription; the other copy of each is marked `Delivery.skip` (acknowledged, not ingested). The shared
subscription carries no identifier: paho parses every property of every message in Python (15-25 µs each on the
development machine), and a copy without `SNAPSHOT_SUB_ID` is the shared one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.app.health import ConnectionState
from infra.mqtt import build_client, close_client, hub_properties, message_property
from shared.errors import TopicError
from shared.topics import Kind, Topics

log = logging.getLogger(__name__)

SHARED_SUB_ID = 1  # no longer set (see the module docstring); messages a session queued before may still carry it
SNAPSHOT_SUB_ID = 2


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the session received it, with what is needed to acknowledge it.

    `skip`: acknowledge, do not ingest (a status copy from the other subscription, or nothing recoverable).
    `error`: the message could not be read (a bug); `topic` and `payload` are what could be recovered of it.
    """

    mid: int
    qos: int
    generation: int  # connection it arrived on: a PUBACK is only valid on that connection
    topic: str
    payload: bytes
    retained: bool = False
    skip: bool = False
    error: str | None = None
    content_type: str | None = None  # MQTT 5 content type: the payload's wire format (`shared.codec.format_of`)


class Acknowledgeable(Protocol):
    """What a PUBACK needs of a message: its id, QoS and the connection it arrived on."""

    @property
    def mid(self) -> int: ...

    @property
    def qos(self) -> int: ...

    @property
    def generation(self) -> int: ...


class IngestSession:
    """A paho client subscribed to the device → hub topics; calls `deliver` from paho's network thread.

    `stopping` is set by the owner when it stops, so a disconnect then is not logged as a loss.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str | None,
        client_id: str,
        topics: Topics,
        share_group: str | None,
        deliver: Callable[[Delivery], None],
        stopping: threading.Event,
        session_expiry_s: int = 3600,
        keepalive: int = 30,
        tls_ca: str | None = None,
    ) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.client_id = client_id
        self.topics = topics
        self.share_group = share_group
        self.session_expiry_s = session_expiry_s
        self.deliver = deliver
        self.stopping = stopping
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._lock = threading.Lock()  # guards the pending SUBACKs
        self._suback_mids: set[int] = set()
        self._ack_lock = threading.Lock()  # generation changes and PUBACKs never interleave
        self._generation = 0
        self._changed_at: float | None = None  # when the connection last came up or went down (for /health)
        self._last_error: str | None = None
        client = build_client(client_id, username=username, password=password, tls_ca=tls_ca, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    # -- lifecycle -------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect in the background, resuming the persistent session (paho reconnects on its own)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def unsubscribe(self) -> None:
        """Stop taking new messages (those already routed to the session keep arriving for a while)."""
        self.client.unsubscribe(self.filters())

    def connection_state(self) -> ConnectionState:
        """Connected or not, since when, and why it last failed (``/health``)."""
        return ConnectionState(self.connected.is_set(), self._changed_at, self._last_error)

    def close(self, *, end_session: bool) -> None:
        """Disconnect; `end_session` (everything acknowledged) lets the other workers take the whole load."""
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        close_client(self.client, props)
        self.connected.clear()

    def filters(self) -> list[str]:
        """Every topic filter this session subscribes to."""
        filters = self.topics.hub_subscriptions(self.share_group)
        if self.share_group:
            filters.append(self.topics.all_devices(Kind.STATUS))
        return filters

    def ack(self, messages: Iterable[Acknowledgeable]) -> int:
        """PUBACK `messages` in order, each only on the connection it came from; returns how many were sent."""
        sent = 0
        with self._ack_lock:
            for m in messages:
                if m.qos > 0 and m.generation == self._generation and self.connected.is_set():
                    self.client.ack(m.mid, m.qos)
                    sent += 1
        return sent

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish QoS 1 on this session's connection (the hub's acks to devices), saying which wire formats the
        hub decodes (`shared.codec.ACCEPTS_PROPERTY`); False when not connected."""
        if not self.connected.is_set():
            return False
        return self.client.publish(topic, payload, qos=1, properties=hub_properties()).rc == mqtt.MQTT_ERR_SUCCESS

    # -- paho callbacks (network thread) ---------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%d refused ingest worker %s: %s", self.host, self.port, self.client_id, reason)
            self._last_error = f"refused: {reason}"
            return
        with self._ack_lock:
            self._generation += 1
        self._changed_at = time.time()
        self.connected.set()
        log.info("ingest worker %s connected to %s:%d (session present: %s)", self.client_id, self.host, self.port,
                 flags.session_present)
        mids = [client.subscribe([(f, 1) for f in self.topics.hub_subscriptions(self.share_group)])[1]]
        if self.share_group:
            snapshot = Properties(PacketTypes.SUBSCRIBE)
            snapshot.SubscriptionIdentifier = SNAPSHOT_SUB_ID
            mids.append(client.subscribe(self.topics.all_devices(Kind.STATUS), qos=1, properties=snapshot)[1])
        with self._lock:
            self._suback_mids = {m for m in mids if m is not None}

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any], props: Any) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused ingest subscriptions (mid %d): %s", mid, ", ".join(failed))
        with self._lock:
            self._suback_mids.discard(mid)
            if not self._suback_mids and not failed:
                self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._ack_lock:
            self._generation += 1  # PUBACKs for messages of the lost connection must not go out on the next
        if self.connected.is_set():
            self._changed_at, self._last_error = time.time(), f"disconnected: {reason}"
        self.connected.clear()
        self.subscribed.clear()
        if not self.stopping.is_set():
            log.warning("ingest worker %s disconnected: %s; unacknowledged messages will be redelivered",
                        self.client_id, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Hand the message on; never raises into paho (a message that cannot be read is delivered with `error`)."""
        # No lock: reading the int is atomic, and `_ack_lock` only keeps increments from interleaving with `ack`;
        # taking it here made every message wait while the writer sent a batch's PUBACKs.
        generation = self._generation
        try:
            delivery = self._read(message, generation)
        except Exception as exc:  # a bug in reading must not stop the session or lose the message's ack
            log.exception("ingest: unexpected error reading a message")
            delivery = _unreadable(message, generation, exc)
        self.deliver(delivery)

    def _read(self, message: mqtt.MQTTMessage, generation: int) -> Delivery:
        payload = bytes(message.payload)
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")  # the broker should have refused it
        retained = bool(message.retain)
        skip = self._duplicate_copy(topic, retained, _subscription_ids(message))
        return Delivery(message.mid, message.qos, generation, topic, payload, retained, skip,
                        content_type=message_property(message, "content_type"))

    def _duplicate_copy(self, topic: str, retained: bool, sub_ids: set[int]) -> bool:
        """A status that also arrives through the other subscription, where it is ingested.

        Live statuses are taken from the shared subscription, retained ones from the snapshot one
        (mosquitto 2.0 also sends retained messages to shared subscriptions, against MQTT 5 §4.8.2).
        """
        if not self.share_group:
            return False
        if SNAPSHOT_SUB_ID in sub_ids and SHARED_SUB_ID not in sub_ids:
            return not retained
        if retained and SNAPSHOT_SUB_ID not in sub_ids:
            try:
                return self.topics.parse(topic).kind is Kind.STATUS
            except TopicError:
                return False
        return False


def _unreadable(message: mqtt.MQTTMessage, generation: int, exc: Exception) -> Delivery:
    """What can be recovered of a message that could not be read: kept as an ``internal`` dead letter."""
    mid, qos = getattr(message, "mid", 0), getattr(message, "qos", 0)
    try:
        return Delivery(mid, qos, generation, message._topic.decode("utf-8", "replace"), bytes(message.payload),
                        error=repr(exc)[:500])
    except Exception:  # pragma: no cover - nothing left to record; acknowledged and skipped
        return Delivery(mid, qos, generation, "", b"", skip=True)


def _subscription_ids(message: mqtt.MQTTMessage) -> set[int]:
    props = getattr(message, "properties", None)
    ids = getattr(props, "SubscriptionIdentifier", None) if props is not None else None
    if ids is None:
        return set()
    return set(ids) if isinstance(ids, list) else {int(ids)}

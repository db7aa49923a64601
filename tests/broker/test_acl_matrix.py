"""The whole ACL matrix on a real mosquitto running the project's config (mosquitto/mosquitto.conf, the rendered
mosquitto/acl) with credentials from `fleetloop provision`: what a device (dev-1) may publish and read.

A device publishes only its own device → hub topics and reads only its own hub → device topics. Every other
case is tried: another device's topics of every kind, every hub → device topic (its own and another's,
retained and not), the plant's sensor readings, wildcards and `$share/...` groups. Non-delivery is proven with
a barrier (tests/fixtures/broker.barrier), never a sleep: the event's QoS 1 publish is acknowledged (mosquitto
routes a message before it sends the PUBACK, and handles one connection's packets in order), then the hub sends
a marker to the reader that would have got the message, and everything before the marker is what it got.
Positive cases (the device's own topics) run through the same machinery, so a barrier that proves nothing
fails them. One broker for the module; each case connects its own `dev-1`.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest

from fleetloop.devbroker import HOST, HUB_USER
from fleetloop.provision import SIM_USER, provision
from shared.topics import DEVICE_TO_HUB, HUB_TO_DEVICE, Kind, Topics
from tests.deploy.mosquitto import mosquitto_with
from tests.fixtures.broker import (
    Clients,
    Collector,
    Received,
    barrier,
    barrier_topic,
    close_client,
    connect_to,
    publish,
    subscribe,
)

DEVICE, OTHER = "dev-1", "dev-2"  # the device under test, and the device whose topics it must not touch
T = Topics()
NOT_AUTHORIZED = 0x87


def sensors(device: str) -> str:
    return f"sensors/{device}/readings"


@dataclass
class Broker:
    """The module's mosquitto and the connections that stay up: the hub reading everything under the prefix,
    the other device reading what is its own, and the simulated plant."""

    port: int
    passwords: dict[str, str]
    hub: mqtt.Client
    hub_seen: Collector
    hub_barrier: str  # a topic the hub's connection reads
    other: mqtt.Client
    other_seen: Collector
    sim: mqtt.Client

    def connect(self, clients: Clients, user: str, collector: Collector | None = None) -> mqtt.Client:
        return clients.connect_to(HOST, self.port, user, self.passwords[user], collector=collector)

    def publisher_of(self, topic: str) -> mqtt.Client:
        """The connection that may legitimately publish `topic`."""
        if topic.startswith("sensors/"):
            return self.sim
        return self.hub if T.parse(topic).kind in HUB_TO_DEVICE else self.other

    def delivered_to(self, user: str, reader: mqtt.Client, seen: Collector) -> list[Received]:
        """Everything `reader` (logged in as `user`) received before a marker the hub sends it now."""
        if user == HUB_USER:
            return barrier(self.hub, self.hub_barrier, seen)
        return barrier(self.hub, T.topic(user, Kind.CMD), seen)  # `reader` is subscribed to its own cmd


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    root = tmp_path_factory.mktemp("acl")
    done = provision(root / "p", slots=3)  # dev-0, dev-1, dev-2, plus hub, sim and probe
    passwords = {s.device_id: s.password for s in done.slots}
    passwords[HUB_USER] = tomllib.loads((root / "p" / "hub" / "secrets.toml").read_text())["mqtt_password"]
    passwords[SIM_USER] = (root / "p" / "sim" / "mqtt_password").read_text().strip()
    with mosquitto_with(root / "p" / "broker" / "passwd", root / "p" / "broker" / "acl", root / "broker") as port:
        hub_seen, other_seen = Collector(), Collector()
        hub = connect_to(HOST, port, HUB_USER, passwords[HUB_USER], collector=hub_seen)
        hub_barrier = barrier_topic()
        for topic in (f"{T.prefix}/#", hub_barrier):
            subscribe(hub, topic)
        other = connect_to(HOST, port, OTHER, passwords[OTHER], collector=other_seen)
        for topic in (*T.device_subscriptions(OTHER), sensors(OTHER)):
            subscribe(other, topic)
        sim = connect_to(HOST, port, SIM_USER, passwords[SIM_USER])
        try:
            yield Broker(port, passwords, hub, hub_seen, hub_barrier, other, other_seen, sim)
        finally:
            for client in (hub, other, sim):
                close_client(client)


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


def _wildcards(topic: str) -> list[str]:
    """Filters that match `topic` other than itself: its kind across devices, its root, everything."""
    if topic.startswith("sensors/"):
        return ["sensors/+/readings", "sensors/#", "+/+/readings", "#"]
    kind = T.parse(topic).kind
    return [T.all_devices(kind), f"{T.prefix}/{OTHER}/#", f"{T.prefix}/#", "#"]


def _shared(topic: str) -> list[str]:
    """`$share/...` groups: the name every example uses for the hub's (`hub`) and one of the device's own."""
    return [f"$share/hub/{topic}", f"$share/hub/{_wildcards(topic)[0]}", f"$share/dev-1-group/{_wildcards(topic)[2]}"]


OTHERS_TOPICS = [*(T.topic(OTHER, kind) for kind in (*HUB_TO_DEVICE, *DEVICE_TO_HUB)), sensors(OTHER)]
READ_CASES = [(f, topic, retained) for topic in OTHERS_TOPICS for f in (topic, *_wildcards(topic), *_shared(topic))
              for retained in (False, True)]


@pytest.mark.parametrize(("filter_", "topic", "retained"), READ_CASES,
                         ids=[f"subscribe {f} <- {'retained ' if r else ''}{t}" for f, t, r in READ_CASES])
def test_a_device_reads_nothing_of_anothers(acl_broker: Broker, mqtt_clients: Clients, filter_: str, topic: str,
                                            retained: bool) -> None:
    b = acl_broker
    seen = Collector()
    device = b.connect(mqtt_clients, DEVICE, seen)
    subscribe(device, T.topic(DEVICE, Kind.CMD))  # the way its barrier comes in
    body, source = marker(), b.publisher_of(topic)
    try:
        if retained:  # stored first: a new subscription would be handed it at once
            publish(source, topic, body, retain=True)
        codes = subscribe(device, filter_)
        assert not codes[0].is_failure or codes[0].value == NOT_AUTHORIZED, (DEVICE, "subscribe", filter_, codes)
        if not retained:
            publish(source, topic, body)
        got = [(m.topic, m.payload) for m in b.delivered_to(DEVICE, device, seen)]
        assert got == [], f"{DEVICE} subscribed to {filter_!r} received {got} ({'retained ' * retained}{topic})"
    finally:
        if retained:
            publish(source, topic, b"", retain=True)


def test_a_device_reads_nothing_of_the_brokers_health(acl_broker: Broker, mqtt_clients: Clients) -> None:
    seen = Collector()
    device = acl_broker.connect(mqtt_clients, DEVICE, seen)
    subscribe(device, T.topic(DEVICE, Kind.CMD))
    for filter_ in ("$SYS/#", "$SYS/broker/uptime", "$share/hub/$SYS/#"):  # retained: handed over at SUBSCRIBE
        subscribe(device, filter_)
    got = [m.topic for m in acl_broker.delivered_to(DEVICE, device, seen)]
    assert got == [], f"{DEVICE} received the broker's health: {got}"


OWN_READ = [(T.topic(DEVICE, kind), retained) for kind in HUB_TO_DEVICE for retained in (False, True)]


@pytest.mark.parametrize(("topic", "retained"), OWN_READ,
                         ids=[f"subscribe {t}{' retained' if r else ''}" for t, r in OWN_READ])
def test_a_device_reads_its_own_hub_to_device_topics(acl_broker: Broker, mqtt_clients: Clients, topic: str,
                                                     retained: bool) -> None:
    """The positive half of the matrix, through the same barrier: proves the barrier does not pass vacuously."""
    b = acl_broker
    body = marker()
    try:
        if retained:  # before it connects: its own cmd subscription (the barrier's path) must not see it live
            publish(b.hub, topic, body, retain=True)
        seen = Collector()
        device = b.connect(mqtt_clients, DEVICE, seen)
        subscribe(device, T.topic(DEVICE, Kind.CMD))
        subscribe(device, topic)
        if not retained:
            publish(b.hub, topic, body)
        got = {(m.topic, m.payload, m.retain) for m in b.delivered_to(DEVICE, device, seen)}
        assert got == {(topic, body, retained)}, (DEVICE, "subscribe", topic, got)
    finally:
        if retained:
            publish(b.hub, topic, b"", retain=True)


FORGED = [*(T.topic(OTHER, kind) for kind in DEVICE_TO_HUB),
          *(T.topic(d, kind) for d in (OTHER, DEVICE) for kind in HUB_TO_DEVICE), sensors(OTHER), sensors(DEVICE)]
OWN = [T.topic(DEVICE, kind) for kind in DEVICE_TO_HUB]
WRITE_CASES = [(topic, retained, topic in OWN) for topic in (*FORGED, *OWN) for retained in (False, True)]


def _reader(topic: str) -> str:
    """Who may read `topic`: the hub everything under the prefix, a device its own sensor readings."""
    return topic.split("/")[1] if topic.startswith("sensors/") else HUB_USER


@pytest.mark.parametrize(("topic", "retained", "allowed"), WRITE_CASES,
                         ids=[f"publish {t}{' retained' if r else ''}" for t, r, _ in WRITE_CASES])
def test_a_device_publishes_only_its_own_device_to_hub_topics(acl_broker: Broker, mqtt_clients: Clients, topic: str,
                                                              retained: bool, allowed: bool) -> None:
    b = acl_broker
    seen = Collector()
    device = b.connect(mqtt_clients, DEVICE, seen)
    subscribe(device, T.topic(DEVICE, Kind.CMD))
    reader = _reader(topic)
    if reader == DEVICE:
        subscribe(device, topic)  # its own readings: it would read a forged one itself
    conn, reader_seen = {HUB_USER: (b.hub, b.hub_seen), OTHER: (b.other, b.other_seen),
                         DEVICE: (device, seen)}[reader]
    body = marker()
    try:
        device.publish(topic, body, qos=1, retain=retained)  # refused or not, routed before the next one
        publish(device, T.topic(DEVICE, Kind.STATUS), marker())  # acknowledged: the broker is past the first
        live = [m.topic for m in b.delivered_to(reader, conn, reader_seen) if m.payload == body]
        assert live == ([topic] if allowed else []), f"{DEVICE} publish {topic!r}: {reader} received {live}"
        if retained:  # and nothing stored that a later subscriber (a device reconnecting) would be handed
            fresh_seen = Collector()
            fresh = b.connect(mqtt_clients, reader, fresh_seen)
            subscribe(fresh, b.hub_barrier if reader == HUB_USER else T.topic(reader, Kind.CMD))
            subscribe(fresh, topic)
            kept = [m.topic for m in b.delivered_to(reader, fresh, fresh_seen) if m.payload == body]
            assert kept == ([topic] if allowed else []), f"{DEVICE} publish {topic!r} retained: kept {kept}"
    finally:
        if retained and allowed:
            publish(device, topic, b"", retain=True)

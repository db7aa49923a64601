"""The broker ACL (mosquitto/acl) on a real mosquitto: devices stay in their own topics, the hub sees all.

Mosquitto 2.0's acl_file cannot refuse a SUBSCRIBE (its subscribe check is a FIXME that allows all), so
a device's SUBACK for a foreign topic may say "granted"; the guarantee is the `read` check on every
delivery, which these tests exercise. A broker that refuses in the SUBACK (0x87) passes them too.
"""

from __future__ import annotations

import uuid

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from fleetloop.devbroker import DevBroker
from shared.topics import Kind, Topics
from tests.fixtures.broker import Clients, Collector, ConnectRefused, connect_client, publish, subscribe

NOT_AUTHORIZED = 0x87


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


def granted_or_refused(codes: list[ReasonCode]) -> bool:
    return not codes[0].is_failure or codes[0].value == NOT_AUTHORIZED


def test_device_cannot_publish_under_another_device(broker: DevBroker, mqtt_clients: Clients) -> None:
    topics = Topics(broker.prefix)
    seen = Collector()
    hub = mqtt_clients.connect(broker, "hub", collector=seen)
    assert not subscribe(hub, topics.all_devices(Kind.ANOMALY))[0].is_failure
    device = mqtt_clients.connect(broker, "dev-1")

    forged, own = marker(), marker()
    device.publish(topics.topic("dev-2", Kind.ANOMALY), forged, qos=1)  # the broker drops it
    publish(device, topics.topic("dev-1", Kind.ANOMALY), own)

    # Same client, same QoS: had the forged message been delivered, it would have arrived first.
    messages = seen.wait_for(lambda msgs: any(m.payload == own for m in msgs))
    assert forged not in [m.payload for m in messages]
    assert [m.topic for m in messages if m.payload == own] == [topics.topic("dev-1", Kind.ANOMALY)]


@pytest.mark.parametrize("kind", [Kind.ASSIGN, Kind.CMD])
def test_device_reads_only_its_own_hub_to_device_topics(
    broker: DevBroker, mqtt_clients: Clients, kind: Kind
) -> None:
    topics = Topics(broker.prefix)
    hub = mqtt_clients.connect(broker, "hub")
    theirs, live, mine = marker(), marker(), marker()
    publish(hub, topics.topic("dev-4", kind), theirs, retain=True)
    try:
        seen = Collector()
        device = mqtt_clients.connect(broker, "dev-3", collector=seen)
        foreign = [subscribe(device, topics.topic("dev-4", kind)), subscribe(device, topics.all_devices(kind))]
        own = subscribe(device, topics.topic("dev-3", kind))
        assert not own[0].is_failure and own[0].value == 1  # granted QoS 1
        assert all(granted_or_refused(codes) for codes in foreign)

        publish(hub, topics.topic("dev-4", kind), live)
        publish(hub, topics.topic("dev-3", kind), mine)
        # One publisher, one QoS: anything for dev-4 would have been delivered before dev-3's message.
        messages = seen.wait_for(lambda msgs: any(m.payload == mine for m in msgs))
        # (Twice, in fact: the wildcard subscription matches dev-3's own topic as well.)
        assert {(m.topic, m.payload) for m in messages} == {(topics.topic("dev-3", kind), mine)}
    finally:
        publish(hub, topics.topic("dev-4", kind), b"", retain=True)  # clear the retained message


def test_device_receives_its_own_retained_assignment(broker: DevBroker, mqtt_clients: Clients) -> None:
    topics = Topics(broker.prefix)
    hub = mqtt_clients.connect(broker, "hub")
    body = marker()
    publish(hub, topics.topic("dev-5", Kind.ASSIGN), body, retain=True)
    try:
        seen = Collector()
        device = mqtt_clients.connect(broker, "dev-5", collector=seen)
        subscribe(device, topics.topic("dev-5", Kind.ASSIGN))
        [message] = seen.wait_count(1)
        assert (message.payload, message.retain) == (body, True)
    finally:
        publish(hub, topics.topic("dev-5", Kind.ASSIGN), b"", retain=True)


def test_device_cannot_read_other_devices_reports(broker: DevBroker, mqtt_clients: Clients) -> None:
    topics = Topics(broker.prefix)
    seen = Collector()
    spy = mqtt_clients.connect(broker, "dev-6", collector=seen)
    for topic in (topics.all_devices(Kind.ANOMALY), f"{broker.prefix}/#", "#"):
        assert granted_or_refused(subscribe(spy, topic))
    hub = mqtt_clients.connect(broker, "hub")
    device = mqtt_clients.connect(broker, "dev-7")
    publish(device, topics.topic("dev-7", Kind.ANOMALY), marker())
    publish(device, topics.topic("dev-7", Kind.STATUS), marker())
    barrier = marker()
    publish(hub, topics.topic("dev-6", Kind.CMD), barrier)  # the one thing dev-6 may read
    messages = seen.wait_for(lambda msgs: any(m.payload == barrier for m in msgs))
    assert {m.topic for m in messages} == {topics.topic("dev-6", Kind.CMD)}


@pytest.mark.parametrize(("user", "password"), [("dev-0", "wrong"), ("hub", ""), ("nobody", "x")])
def test_bad_credentials_are_refused(broker: DevBroker, user: str, password: str) -> None:
    with pytest.raises(ConnectRefused) as refused:
        connect_client(broker, user, password)
    assert refused.value.reason_code is not None
    assert refused.value.reason_code.value in (0x86, 0x87)  # bad user name or password / not authorized


def test_hub_workers_split_a_shared_subscription(broker: DevBroker, mqtt_clients: Clients) -> None:
    topics = Topics(broker.prefix)
    workers = [Collector(), Collector()]
    for seen in workers:
        hub = mqtt_clients.connect(broker, "hub", collector=seen)
        [code] = subscribe(hub, f"$share/hub/{topics.all_devices(Kind.ANOMALY)}")
        assert not code.is_failure, code
    device = mqtt_clients.connect(broker, "dev-8")
    sent = [marker() for _ in range(20)]
    for body in sent:
        publish(device, topics.topic("dev-8", Kind.ANOMALY), body)

    def delivered() -> list[bytes]:
        return [m.payload for seen in workers for m in seen.messages if m.payload in sent]

    workers[0].wait_for(lambda _: len(delivered()) >= len(sent))
    assert sorted(delivered()) == sorted(sent)  # each message to exactly one worker of the group


def test_only_the_hub_reads_broker_health(broker: DevBroker, mqtt_clients: Clients) -> None:
    uptime = "$SYS/broker/uptime"  # retained, so a new subscriber gets it at once (compose healthcheck)
    seen = Collector()
    hub = mqtt_clients.connect(broker, "hub", collector=seen)
    subscribe(hub, uptime)
    assert seen.wait_count(1)[0].topic == uptime

    spied = Collector()
    device = mqtt_clients.connect(broker, "dev-9", collector=spied)
    assert granted_or_refused(subscribe(device, "$SYS/#"))
    subscribe(device, Topics(broker.prefix).topic("dev-9", Kind.CMD))
    barrier = marker()
    publish(hub, Topics(broker.prefix).topic("dev-9", Kind.CMD), barrier)
    messages = spied.wait_for(lambda msgs: any(m.payload == barrier for m in msgs))
    assert [m.payload for m in messages] == [barrier]

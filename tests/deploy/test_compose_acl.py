"""The compose users in mosquitto/acl on a real broker: `sim` writes sensor readings, each device reads only its
own, and the healthcheck's `probe` reads the broker's uptime and nothing of the fleet's."""

from __future__ import annotations

import uuid

from fleetloop.devbroker import DevBroker
from fleetloop.provision import PROBE_USER, SIM_USER
from shared.topics import Kind, Topics
from tests.fixtures.broker import Clients, Collector, publish, subscribe


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


def test_each_device_reads_only_its_own_sensors_and_only_sim_writes_them(fresh_broker: DevBroker,
                                                                        mqtt_clients: Clients) -> None:
    fresh_broker.add_device(SIM_USER)
    seen = Collector()
    device = mqtt_clients.connect(fresh_broker, "dev-3", collector=seen)
    subscribe(device, "sensors/+/readings")
    sim = mqtt_clients.connect(fresh_broker, SIM_USER)
    forged, theirs, mine = marker(), marker(), marker()
    device.publish("sensors/dev-3/readings", forged, qos=1)  # a device may not write readings: dropped
    publish(sim, "sensors/dev-4/readings", theirs)
    publish(sim, "sensors/dev-3/readings", mine)
    messages = seen.wait_for(lambda msgs: any(m.payload == mine for m in msgs))
    assert [(m.topic, m.payload) for m in messages] == [("sensors/dev-3/readings", mine)]


def test_sim_cannot_speak_for_devices(fresh_broker: DevBroker, mqtt_clients: Clients) -> None:
    fresh_broker.add_device(SIM_USER)
    topics = Topics(fresh_broker.prefix)
    seen = Collector()
    hub = mqtt_clients.connect(fresh_broker, "hub", collector=seen)
    subscribe(hub, topics.all_devices(Kind.ANOMALY))
    sim, device = mqtt_clients.connect(fresh_broker, SIM_USER), mqtt_clients.connect(fresh_broker, "dev-1")
    forged, real = marker(), marker()
    sim.publish(topics.topic("dev-1", Kind.ANOMALY), forged, qos=1)
    publish(device, topics.topic("dev-1", Kind.ANOMALY), real)
    messages = seen.wait_for(lambda msgs: any(m.payload == real for m in msgs))
    assert forged not in [m.payload for m in messages]


def test_the_probe_reads_the_uptime_and_nothing_else(fresh_broker: DevBroker, mqtt_clients: Clients) -> None:
    fresh_broker.add_device(PROBE_USER)
    topics = Topics(fresh_broker.prefix)
    hub = mqtt_clients.connect(fresh_broker, "hub")
    secret = marker()
    publish(hub, topics.topic("dev-2", Kind.ASSIGN), secret, retain=True)
    seen = Collector()
    probe = mqtt_clients.connect(fresh_broker, PROBE_USER, collector=seen)
    subscribe(probe, f"{fresh_broker.prefix}/#")
    subscribe(probe, "$SYS/broker/uptime")  # retained by the broker: arrives at once
    messages = seen.wait_for(lambda msgs: any(m.topic == "$SYS/broker/uptime" for m in msgs))
    assert {m.topic for m in messages} == {"$SYS/broker/uptime"}

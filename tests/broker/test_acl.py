"""The broker's users on the dev broker: bad credentials are refused, hub workers split a shared subscription,
the hub reads the broker's health. What each device may publish and read is tests/broker/test_acl_matrix.py.
"""

from __future__ import annotations

import uuid

import pytest

from fleetloop.devbroker import DevBroker
from shared.topics import Kind, Topics
from tests.fixtures.broker import Clients, Collector, ConnectRefused, connect_client, publish, subscribe


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


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


def test_the_hub_reads_broker_health(broker: DevBroker, mqtt_clients: Clients) -> None:
    uptime = "$SYS/broker/uptime"  # retained, so a new subscriber gets it at once (compose healthcheck)
    seen = Collector()
    hub = mqtt_clients.connect(broker, "hub", collector=seen)
    subscribe(hub, uptime)
    assert seen.wait_count(1)[0].topic == uptime

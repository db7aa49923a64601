"""The outbox against a real broker: a row the broker acknowledged stays until the hub acknowledges its seq, is
sent again (same seq, same bytes) when the hub does not, and on the hub's request at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.db import PRIORITY_MODEL_EVENT, AgentDB, OutboxMessage
from agent.link import Link
from agent.outbox import Forwarder
from fleetloop.devbroker import DevBroker
from shared.codec import encode
from shared.messages import ModelEvent
from shared.topics import Kind, Topics
from tests.fixtures.broker import HUB_USER, Clients, Collector, subscribe

DEVICE = "dev-6"
TOPICS = Topics()


@pytest.fixture
def link(broker: DevBroker) -> Iterator[Link]:
    link = Link(device_id=DEVICE, topics=TOPICS, host=broker.host, port=broker.port, username=DEVICE,
                password=broker.password(DEVICE))
    link.start()
    assert link.connected.wait(10)
    yield link
    link.stop()


def _enqueue(db: AgentDB, n: int) -> list[str]:
    messages = [ModelEvent(device_id=DEVICE, ts=time.time(), event="loaded", version="v1") for _ in range(n)]
    db.enqueue([OutboxMessage(m.msg_id, TOPICS.topic(DEVICE, Kind.MODEL_EVENT), encode(m), PRIORITY_MODEL_EVENT)
                for m in messages])
    return [m.msg_id for m in messages]


def _pump_until(forwarder: Forwarder, done: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out; forwarder {forwarder.stats}"
        forwarder.pump(time.time())
        time.sleep(0.02)


def _copies(collector: Collector) -> dict[str, list[int]]:
    """msg_id → the seq of every copy received."""
    out: dict[str, list[int]] = {}
    for m in collector.messages:
        body = m.json()
        out.setdefault(body["msg_id"], []).append(body["seq"])
    return out


def test_rows_the_broker_acked_but_the_hub_did_not_are_kept_and_resent(
    tmp_path: Path, broker: DevBroker, link: Link, mqtt_clients: Clients
) -> None:
    collector = Collector()
    observer = mqtt_clients.connect(broker, HUB_USER, collector=collector)
    subscribe(observer, TOPICS.topic(DEVICE, Kind.MODEL_EVENT))
    db = AgentDB(tmp_path / "agent.db")
    forwarder = Forwarder(db, link, hub_ack_timeout_s=0.5, hub_ack_max_s=0.5)
    ids = _enqueue(db, 5)
    _pump_until(forwarder, lambda: forwarder.stats.acked >= 5)
    assert db.outbox_size() == 5, "a broker PUBACK must not delete a row"
    assert db.awaiting_hub() == 5
    # no hub ack within hub_ack_timeout_s: every row goes out again with the seq it had
    _pump_until(forwarder, lambda: all(len(_copies(collector).get(i, [])) >= 2 for i in ids))
    copies = _copies(collector)
    assert sorted(copies[i][0] for i in ids) == [1, 2, 3, 4, 5]
    assert all(len(set(copies[i])) == 1 for i in ids), copies
    assert forwarder.hub_acked([(1, 3)]) == 3
    assert db.outbox_size() == 2
    assert forwarder.hub_acked([(4, 5)]) == 2
    assert db.outbox_size() == 0 and db.next_seq() == 6
    db.close()


def test_a_resend_request_sends_the_rows_again_at_once_and_numbers_survive_a_restart(
    tmp_path: Path, broker: DevBroker, link: Link, mqtt_clients: Clients
) -> None:
    collector = Collector()
    observer = mqtt_clients.connect(broker, HUB_USER, collector=collector)
    subscribe(observer, TOPICS.topic(DEVICE, Kind.MODEL_EVENT))
    db = AgentDB(tmp_path / "agent.db")
    forwarder = Forwarder(db, link, hub_ack_timeout_s=3600)
    ids = _enqueue(db, 3)
    _pump_until(forwarder, lambda: forwarder.stats.acked >= 3)
    assert forwarder.resend([(2, 2), (9, 9)], time.time()) == 1  # seq 9 was never sent: nothing to resend
    assert forwarder.stats.resend_missing == 1
    _pump_until(forwarder, lambda: len(_copies(collector).get(ids[1], [])) == 2)
    assert [len(_copies(collector)[i]) for i in ids] == [1, 2, 1]
    db.close()
    reopened = AgentDB(tmp_path / "agent.db")  # sequence numbers continue across restarts
    again = Forwarder(reopened, link, hub_ack_timeout_s=3600)
    later = _enqueue(reopened, 1)
    _pump_until(again, lambda: again.stats.acked >= 1)
    collector.wait_for(lambda msgs: later[0] in _copies(collector))
    assert _copies(collector)[later[0]] == [4]
    reopened.close()

"""MessagePack beside JSON: the hub decodes what the content type names with the same rules, dead-letters what it
cannot read with the raw bytes, and an agent in ``wire_format = "auto"`` switches only while its hub says it may."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.db import PRIORITY_MODEL_EVENT, WIRE_FORMAT_KEY, AgentDB, OutboxMessage
from agent.link import Link
from agent.outbox import Forwarder
from fleetloop.devbroker import HUB_USER, DevBroker
from hub.mqtt import IngestWorker
from hub.mqtt.decoding import decode_message
from hub.store.sqlite import SqliteHubStore
from shared.codec import CONTENT_TYPES, decode, encode, transcode
from shared.messages import Command, ModelEvent
from shared.topics import Kind, Topics
from tests.fixtures.broker import Clients, Collector, publish, subscribe

TOPICS = Topics()
MSGPACK = CONTENT_TYPES["msgpack"]


def _event(device: str, **kw: object) -> ModelEvent:
    return ModelEvent(device_id=device, ts=time.time(), event="loaded", version="v1", **kw)  # type: ignore[arg-type]


def test_msgpack_is_decoded_with_every_rule_and_refusals_keep_the_bytes() -> None:
    topic = TOPICS.topic("dev-1", Kind.MODEL_EVENT)
    event = _event("dev-1", seq=7)
    good = decode_message(TOPICS, topic, encode(event, "msgpack"), retained=False, received_at=time.time(),
                          content_type=MSGPACK)
    assert good.record is not None and good.record.message == event
    # the same bytes without their content type are read as JSON, and refused as such
    unlabelled = decode_message(TOPICS, topic, encode(event, "msgpack"), retained=False, received_at=0.0)
    assert unlabelled.dead_letter is not None and unlabelled.dead_letter.reason == "bad_json"
    for payload, content_type, reason, seq in (
        (b"\xc1\x00garbage", MSGPACK, "bad_msgpack", None),
        (encode(_event("dev-2", seq=8), "msgpack"), MSGPACK, "device_mismatch", 8),
        (transcode(encode(event)[:-1] + b',"surprise":1}', "msgpack"), MSGPACK, "schema", 7),  # seq still acked
        (encode(event), "text/csv", "content_type", None),
    ):
        refused = decode_message(TOPICS, topic, payload, retained=False, received_at=0.0, content_type=content_type)
        assert refused.dead_letter is not None, reason
        assert (refused.dead_letter.reason, refused.dead_letter.payload, refused.seq) == (reason, payload, seq)


@pytest.fixture
def hub(broker: DevBroker, tmp_path: Path) -> Iterator[tuple[IngestWorker, SqliteHubStore]]:
    store = SqliteHubStore(tmp_path / "hub.db")
    worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER, password=broker.password(HUB_USER),
                          prefix=broker.prefix, store=store, share_group=f"g{uuid.uuid4().hex[:8]}",
                          client_id=f"ingest-{uuid.uuid4().hex[:8]}", flush_interval_s=0.05)
    worker.start()
    assert worker.wait_ready(10)
    yield worker, store
    worker.stop()
    store.close()


def test_an_auto_agent_speaks_msgpack_once_the_hub_says_so_and_json_again_when_it_does_not(
    broker: DevBroker, hub: tuple[IngestWorker, SqliteHubStore], mqtt_clients: Clients, tmp_path: Path
) -> None:
    """~2 s: one real mosquitto (session fixture), a real ingest worker into SQLite, the agent's link and outbox."""
    worker, store = hub
    device = "dev-7"
    observer = Collector()
    subscribe(mqtt_clients.connect(broker, HUB_USER, collector=observer), TOPICS.topic(device, Kind.MODEL_EVENT))
    link = Link(device_id=device, topics=TOPICS, host=broker.host, port=broker.port, username=device,
                password=broker.password(device))
    link.start()
    db = AgentDB(tmp_path / "agent.db")
    try:
        assert link.connected.wait(10)
        forwarder = Forwarder(db, link, hub_ack_timeout_s=3600)

        def send(n: int) -> list[str]:
            events = [_event(device) for _ in range(n)]
            db.enqueue([OutboxMessage(e.msg_id, TOPICS.topic(device, Kind.MODEL_EVENT), encode(e),
                                      PRIORITY_MODEL_EVENT) for e in events])
            deadline = time.monotonic() + 15
            while db.outbox_size():  # rows leave only when the hub acknowledged them (as `agent.exchange` does)
                assert time.monotonic() < deadline, forwarder.stats
                while not link.inbound.empty():
                    kind, payload = link.inbound.get_nowait()
                    command = decode(Command, payload)
                    if kind is Kind.CMD and command.cmd == "ack":
                        forwarder.hub_acked([(lo, hi) for lo, hi in command.seq_ranges])
                forwarder.pump(time.time())
                time.sleep(0.02)
            return [e.msg_id for e in events]

        first = send(2)  # before any word from the hub: JSON
        assert link.wire_format() == "msgpack"  # the hub's acks said it decodes MessagePack
        later = send(3)
        assert db.get_state(WIRE_FORMAT_KEY) == "msgpack"
        stored = {e.msg_id for e in store.model_events(device_id=device)}
        assert stored == set(first + later)
        seen = {m.json()["msg_id"]: m.content_type for m in observer.wait_for(lambda ms: len(ms) >= 5)}
        assert seen == {**dict.fromkeys(first, None), **dict.fromkeys(later, MSGPACK)}  # JSON: no content type
        assert store.dead_letters() == []
        assert worker.device_formats[device] == MSGPACK  # and the hub logged the change

        garbage = b"\xc1\x00\xff not MessagePack"  # 0xc1 is never used by MessagePack
        link.publish(TOPICS.topic(device, Kind.ANOMALY), garbage, fmt="msgpack").wait_for_publish(5)
        assert worker.wait_for(lambda s: s.dead_letters.get("bad_msgpack") == 1, timeout=10)
        [letter] = store.dead_letters()
        assert (letter.reason, letter.payload, letter.payload_size) == ("bad_msgpack", garbage, len(garbage))

        # an older hub takes over: its commands carry no accepted formats, and the agent falls back to JSON
        hub_client = mqtt_clients.connect(broker, HUB_USER)
        publish(hub_client, TOPICS.topic(device, Kind.CMD), encode(Command(ts=time.time(), cmd="ack")))
        deadline = time.monotonic() + 10
        while link.wire_format() != "json":
            assert time.monotonic() < deadline, "the agent kept MessagePack after a hub that did not offer it"
            time.sleep(0.02)
    finally:
        link.stop()
        db.close()


def test_the_api_shows_binary_dead_letters_as_hex() -> None:
    import doctest

    from hub.api.schemas import deadletters

    result = doctest.testmod(deadletters)
    assert result.attempted >= 1 and result.failed == 0

"""Field: delivery end to end. A device cannot take the hub's share of the fleet's messages; a message lost after the
broker acknowledged it is found by its sequence number and resent; a broker killed with the hub down loses nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from infra.mqtt import message_property
from shared.codec import decode_untyped, encode, format_of
from shared.ids import new_id
from shared.messages import ModelEvent, Sample
from shared.topics import Kind, Topics
from tests.field.harness import FieldFleet
from tests.fixtures.broker import HUB_USER, connect_client, subscribe

pytestmark = pytest.mark.slow

TOPICS = Topics()
FAST_GAPS = {"FLEETLOOP_HUB_DELIVERY__GAP_GRACE_S": "1", "FLEETLOOP_HUB_DELIVERY__CHECK_INTERVAL_S": "0.5",
             "FLEETLOOP_HUB_DELIVERY__RESEND_RETRY_S": "3"}


def _model_events(fleet: FieldFleet, device: str) -> int:
    store = fleet.store()
    try:
        return len(store.model_events(device_id=device))
    finally:
        store.close()


def test_a_device_in_the_hubs_share_group_cannot_take_the_fleets_messages(field_fleet: FieldFleet) -> None:
    field_fleet.share_group = None  # the hub's production default, as docker compose runs it
    field_fleet.start_hub()
    broker = field_fleet.broker
    broker.add_device("mallory")
    broker.add_device("dev-0")
    # The attacker joins the share group the hub used to have (`hub`, in every example) for every device → hub topic.
    attacker = connect_client(broker, "mallory", client_id="mallory", clean_start=False, session_expiry=3600)
    for topic in TOPICS.hub_subscriptions("hub"):
        subscribe(attacker, topic)
    sender = connect_client(broker, "dev-0")
    event = lambda: encode(ModelEvent(device_id="dev-0", ts=time.time(), event="loaded", version="v1"))  # noqa: E731
    topic = TOPICS.topic("dev-0", Kind.MODEL_EVENT)
    sender.publish(topic, event(), qos=1).wait_for_publish(5)
    field_fleet.wait(lambda: _model_events(field_fleet, "dev-0") == 1, "the hub to store a first message")
    n = 200
    for _ in range(n):
        sender.publish(topic, event(), qos=1).wait_for_publish(5)  # every one acknowledged by the broker
    deadline = time.monotonic() + 20
    while _model_events(field_fleet, "dev-0") < n + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _model_events(field_fleet, "dev-0") == n + 1, "the attacker's share of the messages never reached the hub"
    for client in (attacker, sender):
        client.disconnect()
        client.loop_stop()


def _agent_db(fleet: FieldFleet, device: str) -> sqlite3.Connection:
    return sqlite3.connect(fleet.agent_db(device), timeout=30)


def test_a_message_lost_after_the_broker_acked_it_is_found_by_its_seq_and_resent(field_fleet: FieldFleet) -> None:
    field_fleet.start_hub(**FAST_GAPS)
    field_fleet.start_agent("dev-0", hub_ack_timeout_s=3600.0)  # only the hub's gap detection can bring it back
    store = field_fleet.store()
    try:
        field_fleet.wait(lambda: (store.device_sequence("dev-0") or 0) >= 3, "sequenced messages from dev-0")
        assert field_fleet.stop_agent("dev-0") == 0
        # What a broker that acknowledged a message and then lost it leaves behind: a row the agent stamped, sent
        # and had PUBACKed, and a hub that never saw it.
        trace_id = new_id()
        conn = _agent_db(field_fleet, "dev-0")
        with conn:
            seq = int(conn.execute("SELECT value FROM state WHERE key = 'outbox.next_seq'").fetchone()[0])
            lost = Sample(device_id="dev-0", ts=time.time(), model_version="v1", trace_id=trace_id, window_start=1.0,
                          window_end=2.0, score=0.1, threshold=0.5, decision=False, features=[0.0] * 36,
                          reason="random", seq=seq)
            conn.execute(
                "INSERT INTO outbox (msg_id, topic, payload, priority, retain, created, attempts, next_attempt, seq, "
                "delivered) VALUES (?, ?, ?, 4, 0, ?, 1, ?, ?, ?)",
                (lost.msg_id, TOPICS.topic("dev-0", Kind.SAMPLE), encode(lost), time.time(), time.time() + 3600,
                 seq, time.time()),
            )
            conn.execute("UPDATE state SET value = ? WHERE key = 'outbox.next_seq'", (str(seq + 1),))
        conn.close()
        assert store.prediction(trace_id) is None

        field_fleet.start_agent("dev-0", hub_ack_timeout_s=3600.0)
        field_fleet.wait(lambda: store.prediction(trace_id) is not None, "the resend to fill the gap", timeout=60)
        gaps = [e.payload for e in store.events(kind="sequence_gap", limit=1000)]
        assert any(g["device_id"] == "dev-0" and g["lo"] <= seq <= g["hi"] for g in gaps), gaps
        field_fleet.wait(lambda: not store.sequence_holes(device_id="dev-0", reported=True), "the gap to close")

        def acked() -> bool:
            conn = _agent_db(field_fleet, "dev-0")
            try:
                return conn.execute("SELECT count(*) FROM outbox WHERE seq = ?", (seq,)).fetchone()[0] == 0
            finally:
                conn.close()

        field_fleet.wait(acked, "the hub's ack to take the resent row out of the agent's outbox")
    finally:
        store.close()
    metrics = field_fleet.api("viewer").get("/metrics").text
    assert _metric(metrics, "fleetloop_hub_sequence_gaps_total") >= 1
    assert _metric(metrics, "fleetloop_hub_resend_requests_total") >= 1


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


class _Observer:
    """Every data message of one device the broker accepted (a plain subscriber as the hub user, resubscribing
    after a broker restart): what the hub must end up holding."""

    def __init__(self, fleet: FieldFleet, device: str) -> None:
        self.keys: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.topic = f"{TOPICS.prefix}/{device}/#"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"observer-{new_id()[:8]}", protocol=mqtt.MQTTv5)
        client.username_pw_set(HUB_USER, fleet.broker.password(HUB_USER))
        client.reconnect_delay_set(0.2, 1)
        client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        client.on_message = self._on_message
        client.connect_async(fleet.broker.host, fleet.broker.port, keepalive=10)
        client.loop_start()
        self.client = client

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        kind = TOPICS.parse(message.topic).kind
        if kind not in (Kind.ANOMALY, Kind.SAMPLE, Kind.STATS, Kind.MODEL_EVENT):
            return
        body = decode_untyped(message.payload, format_of(message_property(message, "content_type")))
        key = (kind.value, body["trace_id"] if kind in (Kind.ANOMALY, Kind.SAMPLE) else body["msg_id"])
        with self.lock:
            self.keys.add(key)

    def seen(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.keys)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _missing(fleet: FieldFleet, device: str, expected: set[tuple[str, str]]) -> set[tuple[str, str]]:
    store = fleet.store()
    try:
        stats = {r.msg_id for r in store.stats_between(0, 1e12, [device])}
        events = {r.msg_id for r in store.model_events(device_id=device)}
        missing = set()
        for kind, key in expected:
            if kind in ("anomaly", "sample"):
                if store.prediction(key) is None:
                    missing.add((kind, key))
            elif key not in (stats if kind == "stats" else events):
                missing.add((kind, key))
        return missing
    finally:
        store.close()


# paho drops the socket the killed broker reset without closing it (a ResourceWarning in the observer's thread)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_hub_down_and_broker_killed_loses_nothing(field_fleet: FieldFleet) -> None:
    broker = field_fleet.broker
    broker.add_device("dev-0")
    observer = _Observer(field_fleet, "dev-0")
    try:
        field_fleet.start_hub(**FAST_GAPS)
        field_fleet.start_agent("dev-0", sample_rate=0.2)
        store = field_fleet.store()
        try:
            field_fleet.wait(lambda: len(store.stats_between(0, 1e12, ["dev-0"])) >= 2, "stats from dev-0")
        finally:
            store.close()
        field_fleet.stop_hub(signal.SIGKILL)  # its session stays: the broker queues the hub's messages
        before = len(observer.seen())
        field_fleet.wait(lambda: len(observer.seen()) >= before + 100, "100 messages queued for the hub")
        os.kill(broker.pid or 0, signal.SIGKILL)  # before its next save
        assert broker.wait(10) == -signal.SIGKILL
        broker.start()
        field_fleet.wait(lambda: len(observer.seen()) >= before + 150, "the agent to send again")
        field_fleet.start_hub(**FAST_GAPS)
        expected = observer.seen()
        deadline = time.monotonic() + 90
        while (missing := _missing(field_fleet, "dev-0", expected)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not missing, f"{len(missing)} of {len(expected)} messages the broker acknowledged never reached the hub"
    finally:
        observer.close()
    store = field_fleet.store()
    try:  # stored once: one row per message id
        rows = store.stats_between(0, 1e12, ["dev-0"])
        assert len(rows) == len({r.msg_id for r in rows})
    finally:
        store.close()


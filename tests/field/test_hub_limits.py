"""Limits and degradation of a production-mode hub: a flooding device, garbage dead letters, a 50 MB body,
annotations a device signs with a technician's name, and hub.db deleted under the running hub."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import time

import httpx
import paho.mqtt.client as mqtt
import pytest

from shared.codec import encode
from shared.ids import new_id
from shared.messages import Annotation, Stats
from shared.topics import Kind, Topics
from tests.field.harness import FieldFleet
from tests.fixtures.broker import close_client, connect_client

pytestmark = pytest.mark.slow

TOPICS = Topics("fleetloop")


def stats(device: str, ts: float | None = None) -> Stats:
    ts = time.time() if ts is None else ts
    return Stats(device_id=device, ts=ts, period_start=ts - 60, period_end=ts, windows=1, anomalies=0, samples=0,
                 bad_readings=0, bad_rows=0, inference_errors=0, nan_scores=0, feature_hist=[], score_hist=[])


def device_client(fleet: FieldFleet, device: str) -> mqtt.Client:
    if device not in fleet.broker.devices:
        fleet.broker.add_device(device)
    return connect_client(fleet.broker, device)


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]], timeout: float = 120.0) -> None:
    """Publish at QoS 1 as fast as paho goes; wait until the broker acknowledged every one."""
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published()


def stored_stats(fleet: FieldFleet, device: str) -> int:
    store = fleet.store()
    try:
        return len(store.stats_between(0, time.time() + 3600, device_ids=[device]))
    finally:
        store.close()


def test_a_flooding_device_is_rate_limited_and_the_others_still_get_through(field_fleet: FieldFleet) -> None:
    field_fleet.start_hub(FLEETLOOP_HUB_INGEST_RATE_PER_DEVICE_S="50", FLEETLOOP_HUB_INGEST_BURST_PER_DEVICE="200")
    flood, quiet = device_client(field_fleet, "flood-1"), device_client(field_fleet, "quiet-1")
    try:
        topic = TOPICS.topic("flood-1", Kind.STATS)
        started = time.monotonic()
        publish_all(flood, [(topic, encode(stats("flood-1"))) for _ in range(6000)])
        elapsed = time.monotonic() - started
        with field_fleet.api("viewer") as viewer:
            assert viewer.get("/devices").status_code == 200  # responsive during the flood
        barrier = stats("quiet-1")
        publish_all(quiet, [(TOPICS.topic("quiet-1", Kind.STATS), encode(barrier))])
        field_fleet.wait(lambda: stored_stats(field_fleet, "quiet-1") == 1, "the quiet device's stats")
    finally:
        close_client(flood)
        close_client(quiet)
    stored = stored_stats(field_fleet, "flood-1")
    assert stored <= 200 + 50 * (elapsed + 30), stored  # before: all 6,000 stored
    store = field_fleet.store()
    try:
        assert store.dead_letter_counts().get("rate_limited", 0) >= 1
    finally:
        store.close()
    metrics = httpx.get(f"{field_fleet.url}/metrics", timeout=10).text
    assert 'fleetloop_hub_rate_limited_messages_total{device="flood-1"}' in metrics


def test_dead_letters_are_pruned_to_their_retention(field_fleet: FieldFleet) -> None:
    field_fleet.start_hub(FLEETLOOP_HUB_RETENTION__DEAD_LETTERS_MAX_ROWS="100",
                          FLEETLOOP_HUB_RETENTION__INTERVAL_S="0.5")
    garbage = device_client(field_fleet, "junk-1")
    try:
        publish_all(garbage, [(TOPICS.topic("junk-1", Kind.STATS), b"{not json" + os.urandom(512))
                              for _ in range(2000)])
    finally:
        close_client(garbage)
    store = field_fleet.store()
    try:
        field_fleet.wait(lambda: store.counts().dead_letters <= 100 and
                         store.dead_letter_counts().get("bad_json", 0) >= 1, "dead letters pruned to 100")
        newest = store.dead_letters(limit=1)
        assert newest and newest[0].reason == "bad_json"  # the newest are the ones kept
    finally:
        store.close()


def test_a_50_mb_body_is_refused_before_it_is_read_and_device_annotations_speak_for_the_device(
    field_fleet: FieldFleet,
) -> None:
    field_fleet.start_hub()
    with socket.create_connection(("127.0.0.1", field_fleet.api_port), timeout=10) as sock:
        # Headers only: the hub answering 413 proves it neither waited for nor read the 50 MB.
        token = field_fleet.tokens["technician"]
        sock.sendall((f"POST /annotations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n").encode())
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head  # before: the hub waited for the body
    with field_fleet.api("viewer") as viewer:
        assert viewer.get("/health").status_code == 200

    device = device_client(field_fleet, "dev-ann")
    note = Annotation(device_id="dev-ann", ts=time.time(), trace_id=new_id(), label="fault", technician_id="alice")
    try:
        publish_all(device, [(TOPICS.topic("dev-ann", Kind.ANNOTATION), encode(note))])
    finally:
        close_client(device)
    with field_fleet.api("viewer") as viewer:
        field_fleet.wait(lambda: viewer.get(f"/annotations/{note.annotation_id}").status_code == 200,
                         "the device's annotation")
        stored = viewer.get(f"/annotations/{note.annotation_id}").json()
    assert stored["technician_id"] == "device:dev-ann"  # before: "alice"
    assert "alice" in stored["note"]


def test_a_deleted_hub_db_fails_health_and_acknowledges_nothing(field_fleet: FieldFleet) -> None:
    field_fleet.start_hub()
    device = device_client(field_fleet, "dev-del")
    try:
        publish_all(device, [(TOPICS.topic("dev-del", Kind.STATS), encode(stats("dev-del")))])
        field_fleet.wait(lambda: stored_stats(field_fleet, "dev-del") == 1, "the first stats")
        backup = field_fleet.root / "backup.db"
        with sqlite3.connect(field_fleet.hub_dir / "hub.db") as src, sqlite3.connect(backup) as dst:
            src.backup(dst)
        os.unlink(field_fleet.hub_dir / "hub.db")
        field_fleet.wait(lambda: httpx.get(f"{field_fleet.url}/health", timeout=5).status_code == 503,
                         "/health to report the lost database")  # before: 200 while writing into a ghost file
        during = [stats("dev-del") for _ in range(200)]
        publish_all(device, [(TOPICS.topic("dev-del", Kind.STATS), encode(m)) for m in during])
    finally:
        close_client(device)
    assert "was deleted" in field_fleet.log_tail("hub", 100_000)
    field_fleet.stop_hub()
    shutil.copy(backup, field_fleet.hub_dir / "hub.db")  # the operator restores the backup and restarts the hub
    field_fleet.start_hub()  # the broker redelivers what the hub never acknowledged
    field_fleet.wait(lambda: stored_stats(field_fleet, "dev-del") == 1 + len(during),
                     "every message sent while hub.db was gone")  # before: acknowledged into the deleted file

"""Two ``fleetloop hub ingest`` processes on one PostgreSQL store and a real mosquitto share the fleet's messages
through an MQTT 5 shared subscription; one is SIGKILLed mid-run and restarted with its client id (as a supervisor
does): every message is stored exactly once, and the devices' sequence numbers show no gap."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from fleetloop.devbroker import HUB_USER, DevBroker
from fleetloop.devfleet import fleetloop, stop_process
from hub.store.postgres import PostgresHubStore
from shared.codec import encode
from shared.ids import new_id
from shared.messages import ModelEvent, Sample
from shared.topics import Kind, Topics
from tests.fixtures.broker import connect_client
from tests.fixtures.postgres import PostgresServer, create_database

pytestmark = pytest.mark.slow

DEVICES = [f"dev-{i}" for i in range(4)]
PER_DEVICE = 400  # 1,600 messages, half samples, half model events


class Workers:
    """``fleetloop hub ingest`` processes over one store URL and share group; each reports ``ready`` on stdout."""

    def __init__(self, broker: DevBroker, url: str, data_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
        self.env.update({
            "FLEETLOOP_HUB_DEV_MODE": "true", "FLEETLOOP_HUB_DATA_DIR": str(data_dir),
            "FLEETLOOP_HUB_STORE_URL": url, "FLEETLOOP_HUB_MQTT_HOST": broker.host,
            "FLEETLOOP_HUB_MQTT_PORT": str(broker.port), "FLEETLOOP_HUB_MQTT_PASSWORD": broker.password(HUB_USER),
            "FLEETLOOP_HUB_SHARE_GROUP": f"g{secrets.token_hex(4)}", "FLEETLOOP_HUB_INGEST_BATCH_SIZE": "50",
        })
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.drains: dict[int, threading.Thread] = {}  # by pid

    def start(self, name: str) -> None:
        env = {**self.env, "FLEETLOOP_HUB_INGEST_CLIENT_ID": f"ingest-{name}"}
        proc = subprocess.Popen(fleetloop("hub", "ingest"), env=env, stdout=subprocess.PIPE, text=True)
        self.procs[name] = proc
        assert proc.stdout is not None
        line = _readline(proc.stdout, 60)
        assert json.loads(line) == {"ready": f"ingest-{name}"}, line
        # Keep draining its periodic stats lines so the pipe never fills.
        drain = threading.Thread(target=lambda out=proc.stdout: [None for _ in out], daemon=True)
        drain.start()
        self.drains[proc.pid] = drain

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        self._close(proc)

    def stop_all(self) -> list[int]:
        codes = []
        while self.procs:
            proc = self.procs.pop(next(iter(self.procs)))
            codes.append(stop_process(proc))  # type: ignore[arg-type]
            self._close(proc)
        return codes

    def _close(self, proc: subprocess.Popen[str]) -> None:
        self.drains.pop(proc.pid).join(5)  # the pipe closes with its process
        if proc.stdout is not None:
            proc.stdout.close()


def _readline(stream: IO[str], timeout: float) -> str:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert out and out[0], "the ingest worker said nothing (did it fail to start?)"
    return out[0]


@pytest.fixture
def workers(fresh_broker: DevBroker, postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Workers]:
    url = create_database(postgres_server, f"workers_{secrets.token_hex(4)}")
    PostgresHubStore(url, max_size=1).close()  # migrated before two workers open it
    helper = Workers(fresh_broker, url, tmp_path)
    yield helper
    helper.stop_all()


def _messages() -> list[tuple[str, bytes, str]]:
    """(topic, payload, key) in publishing order, round-robin over the devices, each device's seq from 1."""
    topics, now, out = Topics(), time.time(), []
    for seq in range(1, PER_DEVICE + 1):
        for device in DEVICES:
            if seq % 2:
                sample = Sample(device_id=device, ts=now, model_version="v1", trace_id=new_id(), window_start=now - 1,
                                window_end=now, score=0.1, threshold=0.5, decision=False, features=[0.5] * 4,
                                reason="random", seq=seq)
                out.append((topics.topic(device, Kind.SAMPLE), encode(sample), sample.trace_id))
            else:
                event = ModelEvent(device_id=device, ts=now, event="loaded", version="v1", seq=seq)
                out.append((topics.topic(device, Kind.MODEL_EVENT), encode(event), event.msg_id))
    return out


def test_a_worker_killed_mid_run_loses_nothing_and_stores_nothing_twice(
    workers: Workers, fresh_broker: DevBroker
) -> None:
    workers.start("a")
    workers.start("b")
    store = PostgresHubStore(workers.env["FLEETLOOP_HUB_STORE_URL"], max_size=2)
    messages = _messages()
    publisher = connect_client(fresh_broker, HUB_USER)  # the hub user may write any device's topics
    half = len(messages) // 2

    def stored() -> int:
        c = store.counts()
        return c.samples + c.model_events

    def publish(part: list[tuple[str, bytes, str]]) -> None:
        for topic, payload, _ in part:
            publisher.publish(topic, payload, qos=1).wait_for_publish(10)

    try:
        publish(messages[:half])
        deadline = time.monotonic() + 60
        while stored() < half // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        workers.kill("b")  # mid-run: part of its share committed, part in flight, part still queued at the broker
        at_kill = stored()
        assert 0 < at_kill < len(messages)
        publish(messages[half:])  # b's share of these waits in its session at the broker
        workers.start("b")  # restarted with its client id: the broker hands it what it never acknowledged
        deadline = time.monotonic() + 120
        while stored() < len(messages) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # anything redelivered late would show up as an extra row now
        counts = store.counts()
        samples = {p.trace_id for p in store.predictions(0, time.time() + 60, kind="sample")}
        events = store.model_events(limit=10_000)
        expected_samples = {key for topic, _, key in messages if topic.endswith("/sample")}
        expected_events = {key for topic, _, key in messages if topic.endswith("/model/event")}
        assert samples == expected_samples, f"lost {len(expected_samples - samples)} samples"
        assert counts.samples == len(expected_samples)  # 0 duplicates
        assert {e.msg_id for e in events} == expected_events and len(events) == len(expected_events)
        assert counts.dead_letters == 0
        assert all(store.device_sequence(d) == PER_DEVICE for d in DEVICES)
        assert store.sequence_holes() == []  # reconciliation sees nothing missing
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        store.close()
    assert workers.stop_all() == [0, 0]

"""The fleet's production traffic mix for `bench/fleet_load.py`, and the publishing child process.

Per device and minute (an agent with the product's defaults: a stats message every 60 s, windows every 5 s of
which 1 % are sampled, a few anomalies, rare annotations, model events and status changes):

    stats 1.0 (24 features x 10 bins + the score histogram), sample 0.12, anomaly 0.05, status 0.02,
    annotation 0.005, model event 0.002   -> about 1.2 messages per device-minute

Every message but a status carries its device's next sequence number, as an agent's outbox stamps it. The child
publishes as the hub user (the ACL lets it write every device's topics), so 10,000 device identities need no 10,000
broker accounts; ``clients`` connections share the load. Statuses are not retained (a benchmark broker is reused).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.hub import VERSION, bench_manifest, draw_stats
from shared.wire import replace

PER_DEVICE_MINUTE = {"stats": 1.0, "sample": 0.12, "anomaly": 0.05, "status": 0.02, "annotation": 0.005,
                     "model_event": 0.002}
MSGS_PER_DEVICE_S = sum(PER_DEVICE_MINUTE.values()) / 60.0
STORED_KINDS = ("stats", "sample", "anomaly", "annotation", "model_event")  # a status updates a device row


class Mix:
    """Draws the next message of a fleet of `devices` (round-robin, kinds in the mix's proportions)."""

    def __init__(self, prefix: str, devices: int, seed: int) -> None:
        from shared.topics import Topics

        self.topics = Topics(prefix)
        self.devices = [f"fleet-{i:05d}" for i in range(devices)]
        self.rng = np.random.default_rng(seed)
        self.manifest = bench_manifest()
        kinds = list(PER_DEVICE_MINUTE)
        weights = np.asarray([PER_DEVICE_MINUTE[k] for k in kinds])
        self.kinds, self.p = kinds, weights / weights.sum()
        self.seq = [0] * devices
        self.i = 0

    def next(self, ts: float) -> tuple[str, bytes, str]:
        """(topic, payload, kind) of the next message, stamped `ts`."""
        from shared.codec import encode
        from shared.ids import new_id
        from shared.messages import Annotation, Anomaly, ModelEvent, Sample, Status
        from shared.topics import Kind

        index = self.i % len(self.devices)
        self.i += 1
        device = self.devices[index]
        kind = str(self.rng.choice(self.kinds, p=self.p))
        if kind != "status":  # presence is not sequenced (the broker's last will sends it too)
            self.seq[index] += 1
        seq = self.seq[index]
        features = self.rng.normal(size=24).astype(np.float32).tolist()
        message: Any
        if kind == "stats":
            message = replace(draw_stats(self.rng, self.manifest, device, ts, 12), seq=seq)
            topic_kind = Kind.STATS
        elif kind in ("sample", "anomaly"):
            anomaly = kind == "anomaly"
            cls: Any = Anomaly if anomaly else Sample
            extra = {"unit": "pump-1"} if anomaly else {"reason": "random"}
            message = cls(device_id=device, ts=ts, model_version=VERSION, trace_id=new_id(), window_start=ts - 30,
                          window_end=ts, score=0.9 if anomaly else 0.1, threshold=0.5, decision=anomaly,
                          features=features, seq=seq, **extra)
            topic_kind = Kind.ANOMALY if anomaly else Kind.SAMPLE
        elif kind == "status":
            message = Status(device_id=device, ts=ts, state="online", site=f"site-{index % 10}", asset_type="pump",
                             model_version=VERSION)
            topic_kind = Kind.STATUS
        elif kind == "annotation":
            message = Annotation(device_id=device, ts=ts, trace_id=new_id(), label="fault", technician_id="tech-1",
                                 seq=seq)
            topic_kind = Kind.ANNOTATION
        else:
            message = ModelEvent(device_id=device, ts=ts, event="loaded", version=VERSION, seq=seq)
            topic_kind = Kind.MODEL_EVENT
        return self.topics.topic(device, topic_kind), encode(message), kind


def run_publisher(job: dict[str, Any]) -> dict[str, Any]:
    """Connect, say ``ready``, wait for ``go``; then publish `messages` at QoS 1: all at once (``rate`` 0, encoded
    beforehand) or paced at ``rate`` messages/s, each stamped when sent. Prints what it published by kind."""
    mix = Mix(job["prefix"], job["devices"], job["seed"])
    clients = []
    connected = threading.Semaphore(0)
    for k in range(job["clients"]):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-pub-{k}-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(job["user"], job["password"])
        client.max_inflight_messages_set(100)
        client.on_connect = lambda *args, **kw: connected.release()
        client.connect(job["host"], job["port"], keepalive=60)
        client.loop_start()
        clients.append(client)
    for _ in clients:
        if not connected.acquire(timeout=10):
            raise SystemExit("publisher: clients did not connect")
    n, rate = job["messages"], job["rate"]
    ready = [mix.next(time.time()) for _ in range(n)] if not rate else []
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("publisher: no go")
    started = time.monotonic()
    infos, kinds = [], dict.fromkeys(PER_DEVICE_MINUTE, 0)
    for i in range(n):
        if rate:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            topic, payload, kind = mix.next(time.time())
        else:
            topic, payload, kind = ready[i]
        infos.append(clients[i % len(clients)].publish(topic, payload, qos=1))
        kinds[kind] += 1
    deadline = time.monotonic() + 120
    for info in infos:
        info.wait_for_publish(max(0.01, deadline - time.monotonic()))
    for client in clients:
        client.disconnect()
        client.loop_stop()
    return {"published": sum(1 for info in infos if info.is_published()), "kinds": kinds,
            "publish_s": time.monotonic() - started}


if __name__ == "__main__":  # pragma: no cover - the child of bench/fleet_load.py
    sys.stdout.write(json.dumps(run_publisher(json.loads(sys.argv[1]))) + "\n")

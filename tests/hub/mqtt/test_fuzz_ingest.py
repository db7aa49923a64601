"""Fuzzing the ingest worker through a real mosquitto: 10,000 malformed payloads among valid messages.

A seeded generator (so a failure replays exactly) mixes random bytes, truncated JSON, wrong types,
missing and unknown fields, out-of-range values, oversized payloads, foreign device ids and topics
that name no valid device. The worker must stay up, dead-letter every malformed message and store every
valid one exactly once.

The oracle is the generator, not the hub's decoder: each mutation writes down the reason it expects (it knows
what it broke), and the test compares what the store holds, row by row, with what was sent: each dead letter's
topic, device, reason, kept bytes and size, and each stored message's fields.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt

from fleetloop.devbroker import HUB_USER, DevBroker
from hub.mqtt import IngestWorker
from hub.store.sqlite import SqliteHubStore
from shared.codec import MAX_PAYLOAD_BYTES, encode
from shared.ids import new_id
from shared.messages import Annotation, Anomaly, ModelEvent, Sample, Stats
from shared.topics import Kind, Topics
from tests.fixtures.broker import Clients

SEED = 20_240_917
N_MALFORMED = 10_000
VALID_EVERY = 5  # one valid message per this many malformed ones
DEVICES = ["dev-0", "dev-1", "dev-2", "dev-3"]
WRONG: list[dict[str, list[int]]] = [{"nested": []}]  # the wrong type for every field of every device message
# Not a message: the empty payload is not JSON at all; the others are JSON, but not a valid message object.
DEVICE_KINDS = [Kind.STATUS, Kind.ANOMALY, Kind.SAMPLE, Kind.STATS, Kind.ANNOTATION, Kind.MODEL_EVENT]
NOT_OBJECTS = {b"": "bad_json", b"null": "schema", b"42": "schema", b'"text"': "schema", b"[]": "schema",
               b"[1, 2]": "schema", b"true": "schema", b"{}": "schema"}
JSON_STARTS = frozenset(b' \t\r\n{["-0123456789tfnNI')  # bytes a JSON value (or NaN, Infinity) may start with
NOT_JSON_STARTS = [b for b in range(256) if b not in JSON_STARTS]
KEPT_BYTES = 4096  # how much of a refused payload the hub keeps (docs: dead letters)
Mutated = tuple[Kind, bytes, str]  # the topic's kind, the payload, the dead-letter reason the generator expects


def valid(rng: random.Random, device: str) -> tuple[Kind, msgspec.Struct]:
    now = 1.7e9 + rng.random() * 1e6
    kind = rng.choice([Kind.ANOMALY, Kind.SAMPLE, Kind.STATS, Kind.ANNOTATION, Kind.MODEL_EVENT])
    features = [rng.uniform(-1e3, 1e3) for _ in range(rng.randint(1, 48))]
    if kind is Kind.ANOMALY:
        return kind, Anomaly(device_id=device, ts=now, trace_id=new_id(), window_start=now - 5, window_end=now,
                             score=rng.uniform(0.5, 1), threshold=0.5, decision=True, features=features)
    if kind is Kind.SAMPLE:
        return kind, Sample(device_id=device, ts=now, trace_id=new_id(), window_start=now - 5, window_end=now,
                            score=rng.random(), threshold=0.5, decision=False, features=features, reason="random")
    if kind is Kind.STATS:
        return kind, Stats(device_id=device, ts=now, period_start=now - 60, period_end=now, windows=100,
                           anomalies=rng.randint(0, 100), samples=1, bad_readings=0, bad_rows=0,
                           inference_errors=0, nan_scores=0,
                           feature_hist=[[rng.randint(0, 50) for _ in range(11)] for _ in range(6)],
                           score_hist=[rng.randint(0, 50) for _ in range(10)])
    if kind is Kind.ANNOTATION:
        return kind, Annotation(device_id=device, ts=now, trace_id=new_id(), label=rng.choice(["fault", "no_fault"]),
                                technician_id=f"tech-{rng.randint(1, 9)}", confidence=rng.random())
    return kind, ModelEvent(device_id=device, ts=now, event="health_ok", version="v1", metrics={"p99": 3.0})


def as_dict(message: msgspec.Struct) -> dict[str, Any]:
    return json.loads(encode(message))


def required_fields(message: msgspec.Struct) -> list[str]:
    return [f.name for f in msgspec.structs.fields(message) if f.required]


def _random_bytes(rng: random.Random, device: str) -> Mutated:
    payload = bytes([rng.choice(NOT_JSON_STARTS)]) + rng.randbytes(rng.randint(0, 299))  # never a JSON value
    return rng.choice(DEVICE_KINDS), payload, "bad_json"


def _truncated(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    raw = encode(message)
    return kind, raw[: rng.randrange(0, len(raw))], "bad_json"  # an object cut before its closing brace


def _wrong_type(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    data = as_dict(message)
    data[rng.choice(sorted(data))] = WRONG
    return kind, json.dumps(data).encode(), "schema"


def _missing_field(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    data = as_dict(message)
    del data[rng.choice(required_fields(message))]
    return kind, json.dumps(data).encode(), "schema"


def _unknown_field(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    data = as_dict(message)
    data[f"x_{rng.randrange(10**6)}"] = rng.choice([1, "a", None, [], {}])
    return kind, json.dumps(data).encode(), "schema"


def _bad_value(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    data = as_dict(message)
    choices: dict[Kind, list[tuple[str, Any]]] = {
        Kind.ANOMALY: [("score", 1.5), ("threshold", -0.1), ("trace_id", ""), ("features", [1.0] * 4097)],
        Kind.SAMPLE: [("reason", "because"), ("decision", "maybe"), ("unit", "u" * 65)],
        Kind.STATS: [("windows", -1), ("score_hist", [1, -2]), ("feature_hist", [[1.5]])],
        Kind.ANNOTATION: [("label", "broken"), ("confidence", 2.0), ("signal", "gut"), ("technician_id", "")],
        Kind.MODEL_EVENT: [("event", "exploded"), ("version", ""), ("metrics", {"a": "b"})],
    }
    field, value = rng.choice(choices[kind])
    data[field] = value
    if rng.random() < 0.2:
        data = {**as_dict(message), "schema_version": 2}
    return kind, json.dumps(data).encode(), "schema"


def _non_finite(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    if rng.random() < 0.5:  # NaN is not JSON (RFC 8259); 1e999 is, but no float holds it
        return kind, encode(message).replace(b'"ts":', b'"ts":NaN,"_ts":', 1), "bad_json"
    return kind, encode(message).replace(b'"ts":', b'"ts":-1e999,"_ts":', 1), "schema"


def _not_an_object(rng: random.Random, device: str) -> Mutated:
    payload = rng.choice(list(NOT_OBJECTS))
    return rng.choice(DEVICE_KINDS), payload, NOT_OBJECTS[payload]


def _bad_utf8(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    raw = encode(message)
    return kind, raw.replace(device.encode(), device.encode() + b"\xff\xfe", 1), "bad_json"  # JSON is UTF-8


def _deep(rng: random.Random, device: str) -> Mutated:
    # never closed, and past any nesting limit: the typed decoder refuses the first "[" (a message is an object)
    return Kind.STATS, b"[" * rng.randint(1000, 50_000), "schema"


def _huge(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, device)
    return kind, b" " * (MAX_PAYLOAD_BYTES + rng.randint(1, 200_000)) + encode(message), "too_large"


def _other_device(rng: random.Random, device: str) -> Mutated:
    kind, message = valid(rng, rng.choice([d for d in DEVICES if d != device] + ["dev-99", "pump-7"]))
    return kind, encode(message), "device_mismatch"


MUTATIONS: list[tuple[float, Callable[[random.Random, str], Mutated]]] = [
    (12, _random_bytes), (14, _truncated), (14, _wrong_type), (12, _missing_field), (12, _unknown_field),
    (12, _bad_value), (4, _non_finite), (4, _not_an_object), (4, _bad_utf8), (1, _deep), (0.3, _huge),
    (10, _other_device),
]


STORED_FIELDS: dict[str, tuple[str, ...]] = {
    "anomaly": ("trace_id", "msg_id", "device_id", "ts", "model_version", "window_start", "window_end", "score",
                "threshold", "decision", "features"),
    "sample": ("trace_id", "msg_id", "device_id", "ts", "model_version", "window_start", "window_end", "score",
               "threshold", "decision", "features", "reason"),
    "stats": ("msg_id", "device_id", "ts", "period_start", "period_end", "windows", "anomalies", "samples",
              "bad_readings", "bad_rows", "inference_errors", "nan_scores", "feature_hist", "score_hist"),
    "annotation": ("annotation_id", "msg_id", "device_id", "ts", "trace_id", "label", "confidence", "signal"),
    "model_event": ("msg_id", "device_id", "ts", "event", "version", "metrics"),
}


def frozen(value: Any) -> Any:
    """Lists as tuples and dicts as sorted item tuples, so rows and messages compare and count."""
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, frozen(v)) for k, v in value.items()))
    return value


def content(kind: str, item: Any) -> tuple[Any, ...]:
    return (kind, *(frozen(getattr(item, name)) for name in STORED_FIELDS[kind]))


def expected_content(kind: str, message: msgspec.Struct) -> tuple[Any, ...]:
    """What the store must hold of a valid `message`. An annotation sent by a device speaks for the device: the
    technician it names moves into the note (docs: labels, attribution)."""
    if isinstance(message, Annotation):
        return (*content(kind, message), f"device:{message.device_id}",
                f"technician (claimed by the device): {message.technician_id}")
    return content(kind, message)


def stored_content(store: SqliteHubStore) -> Counter[tuple[Any, ...]]:
    rows: Counter[tuple[Any, ...]] = Counter()
    rows.update(content(p.kind, p) for p in store.predictions(0, 1e12))
    rows.update(content("stats", r) for r in store.stats_between(0, 1e12))
    rows.update((*content("annotation", a), a.technician_id, a.note) for a in store.annotations())
    rows.update(content("model_event", e) for e in store.model_events())
    return rows


def test_ten_thousand_malformed_payloads_are_dead_lettered_and_valid_ones_stored(
    fresh_broker: DevBroker, mqtt_clients: Clients, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    topics = Topics(fresh_broker.prefix)
    weights = [w for w, _ in MUTATIONS]
    plan: list[tuple[str, str, bytes]] = []  # (publisher, topic, payload)
    # what each refused message must leave: (topic, device of the topic, reason, kept bytes, size)
    expected_dead: Counter[tuple[str, str | None, str, bytes, int]] = Counter()
    expected_stored: Counter[tuple[Any, ...]] = Counter()
    for i in range(N_MALFORMED):
        device = rng.choice(DEVICES)
        if i % 97 == 0:  # a topic whose device level is not a device id: only the hub may publish there
            topic, payload, publisher = f"{fresh_broker.prefix}/-{device}/anomaly", rng.randbytes(20), HUB_USER
            reason, named = "unknown_topic", None
        else:
            kind, payload, reason = rng.choices(MUTATIONS, weights)[0][1](rng, device)
            topic, publisher, named = topics.topic(device, kind), device, device
        expected_dead[(topic, named, reason, payload[:KEPT_BYTES], len(payload))] += 1
        plan.append((publisher, topic, payload))
        if i % VALID_EVERY == 0:
            device = rng.choice(DEVICES)
            kind, message = valid(rng, device)
            plan.append((device, topics.topic(device, kind), encode(message)))
            expected_stored[expected_content(kind.name.lower(), message)] += 1
    reasons = Counter(reason for _, _, reason, _, _ in expected_dead.elements())
    assert set(reasons) == {"bad_json", "schema", "too_large", "device_mismatch", "unknown_topic"}

    store = SqliteHubStore(tmp_path / "hub.db")
    worker = IngestWorker(host=fresh_broker.host, port=fresh_broker.port, username=HUB_USER,
                          password=fresh_broker.password(HUB_USER), prefix=fresh_broker.prefix, store=store,
                          client_id=f"fuzz-{uuid.uuid4().hex[:6]}")
    worker.start()
    try:
        assert worker.wait_ready(10)
        clients = {user: mqtt_clients.connect(fresh_broker, user) for user in [*DEVICES, HUB_USER]}
        started = time.monotonic()
        infos: list[mqtt.MQTTMessageInfo] = [clients[p].publish(t, body, qos=1) for p, t, body in plan]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
        published = time.monotonic()
        total = len(plan)
        assert worker.wait_for(lambda s: s.processed >= total, timeout=60), worker.stats()
        assert worker.wait_idle(quiet_s=0.3)
        done = time.monotonic()
        stats = worker.stats()
        print(f"\nfuzz: {total} messages ({N_MALFORMED} malformed) published in "
              f"{published - started:.2f} s, all committed after {done - started:.2f} s "
              f"({total / (done - started):.0f} msg/s, {stats.batches} batches)")

        assert stats.processed == total and stats.pending == 0 and stats.store_errors == 0
        assert Counter(stats.dead_letters) == reasons
        assert Counter(store.dead_letter_counts()) == reasons
        dead = store.dead_letters(limit=2 * N_MALFORMED)
        held = Counter((d.topic, d.device_id, d.reason, d.payload, d.payload_size) for d in dead)
        assert held == expected_dead, (f"{sum((held - expected_dead).values())} unexpected, "
                                       f"{sum((expected_dead - held).values())} missing; first unexpected: "
                                       f"{next(iter(held - expected_dead), None)!r:.400}")
        assert all(d.detail for d in dead)  # every refusal says why
        for d in dead:
            if d.reason == "device_mismatch":  # the detail names the device the payload claims
                claimed = json.loads(d.payload)["device_id"]
                assert claimed in d.detail and d.device_id in d.detail, d.detail

        assert sum(stats.stored.values()) == sum(expected_stored.values()) and not stats.duplicates
        assert stored_content(store) == expected_stored
        assert worker.connected.is_set() and worker.writer.is_alive()
    finally:
        worker.stop()
        store.close()

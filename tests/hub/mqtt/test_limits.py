"""What ingest refuses by time and rate: timestamps from the future, a device over its rate."""

from __future__ import annotations

import json

from hub.mqtt.decoding import decode_message
from hub.mqtt.ratelimit import DeviceRateLimiter
from shared.topics import Topics

T = Topics("fleetloop")
NOW = 1_700_000_000.0


def _status(ts: float) -> bytes:
    return json.dumps({"schema_version": 1, "device_id": "dev-1", "ts": ts, "state": "online"}).encode()


def _stats(ts: float) -> bytes:
    return json.dumps({"schema_version": 1, "device_id": "dev-1", "ts": ts, "period_start": ts - 60,
                       "period_end": ts, "windows": 1, "anomalies": 0, "samples": 0, "bad_readings": 0,
                       "bad_rows": 0, "inference_errors": 0, "nan_scores": 0, "feature_hist": [],
                       "score_hist": []}).encode()


def test_data_from_the_future_is_dead_lettered() -> None:
    far = decode_message(T, "fleetloop/dev-1/stats", _stats(NOW + 10 * 365 * 86400), retained=False,
                         received_at=NOW, max_skew_s=300)
    assert far.dead_letter is not None and far.dead_letter.reason == "clock_skew"
    near = decode_message(T, "fleetloop/dev-1/stats", _stats(NOW + 60), retained=False, received_at=NOW,
                          max_skew_s=300)
    assert near.record is not None


def test_a_status_from_the_future_takes_the_receive_time() -> None:
    d = decode_message(T, "fleetloop/dev-1/status", _status(NOW + 10 * 365 * 86400), retained=True,
                       received_at=NOW, max_skew_s=300)
    assert d.record is not None and d.record.message.ts == NOW


def test_a_device_annotation_is_attributed_to_the_device() -> None:
    payload = json.dumps({"schema_version": 1, "device_id": "dev-1", "ts": NOW, "trace_id": "t1", "label": "fault",
                          "technician_id": "alice"}).encode()
    d = decode_message(T, "fleetloop/dev-1/annotation", payload, retained=False, received_at=NOW)
    assert d.record is not None
    assert d.record.message.technician_id == "device:dev-1"  # type: ignore[union-attr]
    assert "alice" in (d.record.message.note or "")  # type: ignore[union-attr]


def test_the_rate_limiter_refuses_a_flood_and_refills() -> None:
    limiter = DeviceRateLimiter(rate_per_s=100, burst=500)
    verdicts = [limiter.allow("flood", NOW) for _ in range(6000)]
    assert sum(v.allowed for v in verdicts) == 500
    assert sum(v.first for v in verdicts) == 1  # one dead letter per episode
    assert limiter.allow("quiet", NOW).allowed
    assert sum(limiter.allow("flood", NOW + 1).allowed for _ in range(200)) == 100

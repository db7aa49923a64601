"""The raw-window message: one series per sensor and one value per timestamp, unknown fields refused, and the
largest window it allows still fits one MQTT payload."""

from __future__ import annotations

import json

import pytest

from shared.codec import MAX_PAYLOAD_BYTES, decode, decode_topic, encode
from shared.errors import DecodeError
from shared.messages import MAX_WINDOW_VALUES, RawWindow
from shared.topics import Kind, Topics

GOOD = {"schema_version": 1, "device_id": "dev-1", "ts": 5.0, "trace_id": "t-1", "sensors": ["a", "b"],
        "timestamps": [1.0, 2.0], "values": [[0.1, 0.2], [3.0, 4.0]]}


def test_a_window_round_trips_on_its_topic() -> None:
    message = decode_topic(Topics(), Topics().topic("dev-1", Kind.WINDOW), json.dumps(GOOD).encode())
    assert isinstance(message, RawWindow) and message.values == [[0.1, 0.2], [3.0, 4.0]] and message.available
    assert decode(RawWindow, encode(message)) == message
    gone = RawWindow(device_id="dev-1", ts=5.0, trace_id="t-2", available=False)
    assert decode(RawWindow, encode(gone)).sensors == []


@pytest.mark.parametrize("change", [
    {"values": [[0.1, 0.2]]},  # a sensor without its series
    {"values": [[0.1], [3.0, 4.0]]},  # a series shorter than the timestamps
    {"values": [[0.1, float("nan")], [3.0, 4.0]]},
    {"timestamps": [1.0, float("inf")]},
    {"available": False},  # "not here" with readings
    {"raw": [1]},  # unknown fields are refused
    {"schema_version": 2},
])
def test_a_malformed_window_is_refused(change: dict[str, object]) -> None:
    payload = json.dumps({**GOOD, **change}).encode()
    with pytest.raises(DecodeError):
        decode(RawWindow, payload)


def test_the_largest_window_fits_one_payload_and_a_larger_one_is_refused() -> None:
    readings = MAX_WINDOW_VALUES // 2  # one sensor: a timestamp and a value per reading
    worst = -1.2345678901234567e-300
    big = RawWindow(device_id="dev-1", ts=5.0, trace_id="t" * 64, sensors=["s" * 64],
                    timestamps=[worst] * readings, values=[[worst] * readings])
    assert len(encode(big)) < MAX_PAYLOAD_BYTES
    with pytest.raises(ValueError, match="at most"):
        RawWindow(device_id="dev-1", ts=5.0, trace_id="t", sensors=["a"], timestamps=[1.0] * (readings + 1),
                  values=[[1.0] * (readings + 1)])

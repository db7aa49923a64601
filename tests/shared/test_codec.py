"""Round-trip property tests for every message type, and the codec's error reasons."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.codec import (
    FORMATS,
    accepted_formats,
    accepts_value,
    decode,
    decode_topic,
    encode,
    format_of,
    transcode,
)
from shared.errors import DecodeError
from shared.messages import (
    Annotation,
    Anomaly,
    Assign,
    Command,
    ModelEvent,
    RawWindow,
    Sample,
    Stats,
    Status,
)
from shared.topics import Kind, Topics

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
prob = st.floats(min_value=0.0, max_value=1.0)
device = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
text = st.text(max_size=30)
counts = st.integers(min_value=0, max_value=10**9)

common = {"device_id": device, "ts": finite, "model_version": st.none() | st.text(min_size=1, max_size=20)}
prediction = {
    **common,
    "trace_id": st.text(min_size=1, max_size=40),
    "window_start": finite,
    "window_end": finite,
    "unit": st.none() | st.text(max_size=10),
    "score": prob,
    "threshold": prob,
    "decision": st.booleans(),
    "features": st.lists(finite, max_size=50),
}

messages = st.one_of(
    st.builds(Status, state=st.sampled_from(["online", "offline"]), agent_version=st.none() | text, **common),
    st.builds(Anomaly, **prediction),
    st.builds(Sample, reason=st.sampled_from(["random", "low_confidence"]), **prediction),
    st.builds(
        Stats,
        period_start=finite, period_end=finite, windows=counts, anomalies=counts, samples=counts,
        bad_readings=counts, bad_rows=counts, inference_errors=counts, nan_scores=counts,
        feature_hist=st.lists(st.lists(counts, max_size=12), max_size=8), score_hist=st.lists(counts, max_size=20),
        latency_p50_ms=st.none() | finite, latency_p99_ms=st.none() | finite, **common,
    ),
    st.builds(
        Annotation, trace_id=st.text(min_size=1, max_size=40), label=st.sampled_from(["fault", "no_fault"]),
        technician_id=st.text(min_size=1, max_size=10), confidence=prob, note=st.none() | text, **common,
    ),
    st.builds(ModelEvent, event=st.sampled_from(["loaded", "refused", "swapped"]), version=st.text(min_size=1,
              max_size=10), detail=st.none() | text, **common),
    st.builds(Assign, ts=finite, version=st.text(min_size=1, max_size=10), mode=st.sampled_from(["active", "shadow"]),
              sha256=st.from_regex(r"\A[0-9a-f]{64}\Z"), signature=text, url=text),
    st.builds(Command, ts=finite, cmd=st.sampled_from(["rollback", "upload_traces"]),
              trace_ids=st.lists(st.text(max_size=10), max_size=5)),
    st.builds(Command, ts=finite, cmd=st.just("ack"), seq_ranges=st.lists(
        st.integers(min_value=1, max_value=2**40).map(lambda n: (n, n + 3)), max_size=5)),
    st.builds(RawWindow, trace_id=st.text(min_size=1, max_size=40), unit=st.none() | st.text(max_size=10),
              **common).map(lambda w: RawWindow(
                  **{**{f: getattr(w, f) for f in w.__struct_fields__}, "sensors": ["a", "b"],
                     "timestamps": [w.ts, w.ts + 1.0], "values": [[1.5, -2.0], [0.0, 3.25]]})),
)


@given(messages)
def test_round_trip(message):
    assert decode(type(message), encode(message)) == message


@given(messages)
def test_round_trip_msgpack(message):
    """Both formats carry the same messages: encoded directly, or converted from the JSON an agent's outbox keeps."""
    assert decode(type(message), encode(message, "msgpack"), fmt="msgpack") == message
    assert decode(type(message), transcode(encode(message), "msgpack"), fmt="msgpack") == message
    assert len(encode(message, "msgpack")) <= len(encode(message))


def _anomaly(**kw):
    base = dict(device_id="dev-1", ts=1.0, trace_id="t", window_start=0.0, window_end=1.0, score=0.9,
                threshold=0.5, decision=True, features=[1.0, 2.0])
    return Anomaly(**{**base, **kw})


def test_unknown_field_is_refused():
    body = json.loads(encode(_anomaly()))
    body["surprise"] = 1
    with pytest.raises(DecodeError) as err:
        decode(Anomaly, json.dumps(body).encode())
    assert err.value.reason == "schema"
    assert "surprise" in err.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"{not json", "bad_json"), (b'{"schema_version": 2}', "schema"), (b"x" * 300_000, "too_large"),
     (b"[]", "schema"), (b'{"schema_version": 1, "device_id": "dev-1", "ts": "NaN"}', "schema")],
)
def test_decode_errors_have_reasons(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode(Anomaly, payload)
    assert err.value.reason == reason


def test_schema_version_is_checked():
    body = json.loads(encode(_anomaly()))
    body["schema_version"] = 99
    with pytest.raises(DecodeError, match="schema_version"):
        decode(Anomaly, json.dumps(body).encode())


def test_non_finite_features_are_refused():
    with pytest.raises(ValueError):
        _anomaly(features=[float("nan")])


def test_decode_topic_checks_device_and_topic():
    topics = Topics("fleetloop")
    payload = encode(_anomaly())
    assert decode_topic(topics, "fleetloop/dev-1/anomaly", payload).device_id == "dev-1"  # type: ignore[attr-defined]
    with pytest.raises(DecodeError) as err:
        decode_topic(topics, "fleetloop/dev-2/anomaly", payload)
    assert err.value.reason == "device_mismatch"
    with pytest.raises(DecodeError) as err:
        decode_topic(topics, "fleetloop/dev-1/nonsense", payload)
    assert err.value.reason == "unknown_topic"
    with pytest.raises(DecodeError) as err:
        decode_topic(topics, "fleetloop/dev-1/stats", payload)
    assert err.value.reason == "schema"


def test_annotation_needs_a_target():
    with pytest.raises(ValueError, match="trace_id or both"):
        Annotation(device_id="d", ts=1.0, label="fault", technician_id="t")
    with pytest.raises(ValueError, match="before"):
        Annotation(device_id="d", ts=1.0, label="fault", technician_id="t", start_ts=5.0, end_ts=1.0)
    ok = Annotation(device_id="d", ts=1.0, label="fault", technician_id="t", start_ts=1.0, end_ts=5.0)
    assert ok.signal == "confirmed"


def test_an_upload_command_may_name_a_time_range():
    with pytest.raises(ValueError, match="go together"):
        Command(ts=1.0, cmd="upload_traces", start_ts=1.0)
    with pytest.raises(ValueError, match="before"):
        Command(ts=1.0, cmd="upload_traces", start_ts=5.0, end_ts=1.0)
    ranged = Command(ts=1.0, cmd="upload_traces", start_ts=1.0, end_ts=5.0)
    assert decode(Command, encode(ranged)) == ranged


def test_topic_kind_table_is_complete():
    from shared.messages import MESSAGE_TYPES

    assert set(MESSAGE_TYPES) == set(Kind)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_contract_holds_in_both_formats(fmt):
    """schema_version, unknown fields and field types are checked whatever the format, with one error type."""
    body = json.loads(encode(_anomaly()))
    for change, reason in (({"surprise": 1}, "schema"), ({"schema_version": 2}, "schema"),
                           ({"score": "high"}, "schema"), ({"decision": 1}, "schema")):
        payload = transcode(json.dumps({**body, **change}).encode(), fmt)
        with pytest.raises(DecodeError) as err:
            decode(Anomaly, payload, fmt=fmt)
        assert err.value.reason == reason, change


@pytest.mark.parametrize(("payload", "reason"), [(b"\xc1", "bad_msgpack"), (b"\x85\xa3", "bad_msgpack"),
                                                 (encode(_anomaly()), "schema"), (b"\x90", "schema")])
def test_malformed_msgpack_has_its_reason(payload, reason):
    """Bytes that are not MessagePack, cut short, or JSON labelled MessagePack (its ``{`` reads as the number 123)."""
    with pytest.raises(DecodeError) as err:
        decode(Anomaly, payload, fmt="msgpack")
    assert err.value.reason == reason


def test_format_negotiation_values():
    assert [format_of(ct) for ct in (None, "", "application/json", "application/msgpack")] == [
        "json", "json", "json", "msgpack"]
    with pytest.raises(DecodeError) as err:
        format_of("application/cbor")
    assert err.value.reason == "content_type"
    assert accepted_formats(accepts_value()) == frozenset(FORMATS)
    assert accepted_formats(None) == accepted_formats("json") == frozenset({"json"})
    with pytest.raises(DecodeError) as err:
        transcode(b"{not json", "msgpack")
    assert err.value.reason == "bad_json"


def test_docstring_examples_run() -> None:
    import doctest

    import shared.codec

    result = doctest.testmod(shared.codec)
    assert result.attempted >= 5 and result.failed == 0

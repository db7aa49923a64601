"""Encoding and decoding of wire messages: JSON or MessagePack bytes in, validated messages out, one error type.

Two wire formats carry the same messages: JSON (the default, readable, what every hub understands) and
MessagePack (smaller and cheaper to decode). A payload's format travels beside it as the MQTT 5 content type
(`CONTENT_TYPES`; none means JSON, as agents before MessagePack send), never guessed from the bytes. A hub that
decodes MessagePack says so on the hub → device messages it sends, in the user property `ACCEPTS_PROPERTY`; an
agent in ``wire_format = "auto"`` sends MessagePack only while its hub says that (`agent.outbox`).
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar, get_args

import msgspec

from shared.errors import DecodeError, TopicError
from shared.messages import MESSAGE_TYPES, Message, Wire
from shared.topics import ParsedTopic, Topics

MAX_PAYLOAD_BYTES = 256 * 1024
M = TypeVar("M", bound=msgspec.Struct)

WireFormat = Literal["json", "msgpack"]
FORMATS: tuple[WireFormat, ...] = get_args(WireFormat)
CONTENT_TYPES: dict[WireFormat, str] = {"json": "application/json", "msgpack": "application/msgpack"}
_BY_CONTENT_TYPE: dict[str, WireFormat] = {ct: fmt for fmt, ct in CONTENT_TYPES.items()}
ACCEPTS_PROPERTY = "fleetloop-accepts"
"""MQTT 5 user property on hub → device messages: the wire formats the hub decodes, comma-separated."""

_ENCODER = msgspec.json.Encoder()
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[tuple[type[Any], WireFormat], msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]] = {}
_BAD_SYNTAX: dict[WireFormat, str] = {"json": "bad_json", "msgpack": "bad_msgpack"}


def encode(message: msgspec.Struct, fmt: WireFormat = "json") -> bytes:
    """Serialise a message to compact JSON (or MessagePack) bytes."""
    return _ENCODER.encode(message) if fmt == "json" else _MSGPACK_ENCODER.encode(message)


def transcode(payload: bytes, fmt: WireFormat) -> bytes:
    """`payload`, an encoded JSON message, in `fmt`: the agent keeps JSON in its outbox and converts when it sends
    (DecodeError if `payload` is not JSON).

    >>> transcode(b'{"a":1.0,"b":[true,null]}', "msgpack")
    b'\\x82\\xa1a\\xcb?\\xf0\\x00\\x00\\x00\\x00\\x00\\x00\\xa1b\\x92\\xc3\\xc0'
    """
    if fmt == "json":
        return payload
    return _MSGPACK_ENCODER.encode(decode_untyped(payload))


def format_of(content_type: str | None) -> WireFormat:
    """The wire format a payload's MQTT content type names; no content type is JSON. DecodeError otherwise.

    >>> format_of(None), format_of("application/msgpack")
    ('json', 'msgpack')
    >>> format_of("text/csv")
    Traceback (most recent call last):
    shared.errors.DecodeError: content_type: unsupported content type 'text/csv' (application/json, application/msgpack)
    """
    if not content_type:
        return "json"
    fmt = _BY_CONTENT_TYPE.get(content_type)
    if fmt is None:
        raise DecodeError("content_type", f"unsupported content type {content_type[:64]!r} "
                                          f"({', '.join(CONTENT_TYPES.values())})")
    return fmt


def accepts_value(formats: tuple[WireFormat, ...] = FORMATS) -> str:
    """The `ACCEPTS_PROPERTY` value a hub that decodes `formats` sends."""
    return ",".join(formats)


def accepted_formats(value: str | None) -> frozenset[WireFormat]:
    """The formats an `ACCEPTS_PROPERTY` value names (unknown names ignored); JSON when there is none.

    >>> sorted(accepted_formats("json,msgpack,cbor")), sorted(accepted_formats(None))
    (['json', 'msgpack'], ['json'])
    """
    if value is None:
        return frozenset({"json"})
    return frozenset(f for f in FORMATS if f in {v.strip() for v in value.split(",")})


def with_seq(payload: bytes, seq: int) -> bytes:
    """`payload` (an encoded device message) with its `seq` field set; the agent stamps it when a message first
    leaves its outbox, so sequence numbers follow send order, not enqueue order.

    >>> with_seq(b'{"a":1,"seq":null}', 7)
    b'{"a":1,"seq":7}'
    """
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise DecodeError("schema", "a sequenced message must be a JSON object")
    body["seq"] = seq
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode(model: type[M], payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES, fmt: WireFormat = "json") -> M:
    """Validate `payload` (in `fmt`) as `model`; raise DecodeError with a reason code on anything wrong: the same
    checks in both formats (schema_version, types and constraints, unknown fields refused, ``__post_init__``).

    >>> from shared.messages import Command
    >>> decode(Command, b'{"ts": 1.0, "cmd": "reboot"}')
    Traceback (most recent call last):
    shared.errors.DecodeError: schema: Command: Invalid enum value 'reboot' - at `$.cmd`
    """
    if len(payload) > max_bytes:
        raise DecodeError("too_large", f"{len(payload)} bytes exceeds the limit of {max_bytes}")
    decoder = _DECODERS.get((model, fmt))
    if decoder is None:
        decoder = _DECODERS[model, fmt] = (msgspec.json.Decoder(model) if fmt == "json"
                                           else msgspec.msgpack.Decoder(model))
    try:
        message: M = decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError("schema", f"{model.__name__}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(_BAD_SYNTAX[fmt], str(exc)) from None
    return message


def decode_untyped(payload: bytes, fmt: WireFormat = "json") -> Any:
    """`payload` as plain data (no schema), for reading a field of a refused message; DecodeError if unreadable.

    >>> decode_untyped(b'\\x81\\xa3seq\\x07', "msgpack")
    {'seq': 7}
    """
    try:
        return msgspec.json.decode(payload) if fmt == "json" else msgspec.msgpack.decode(payload)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise DecodeError(_BAD_SYNTAX[fmt], str(exc)) from None


def decode_topic(
    topics: Topics, topic: str, payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES, fmt: WireFormat = "json"
) -> Wire:
    """Decode a payload received on `topic`, checking that a device message names the topic's device."""
    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        raise DecodeError("unknown_topic", str(exc)) from None
    return decode_parsed(parsed, payload, max_bytes=max_bytes, fmt=fmt)


def decode_parsed(parsed: ParsedTopic, payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES,
                  fmt: WireFormat = "json") -> Wire:
    """`decode_topic` for a topic already parsed."""
    message = decode(MESSAGE_TYPES[parsed.kind], payload, max_bytes=max_bytes, fmt=fmt)
    if isinstance(message, Message) and message.device_id != parsed.device_id:
        raise DecodeError(
            "device_mismatch", f"payload names device {message.device_id!r} on a topic of {parsed.device_id!r}"
        )
    return message

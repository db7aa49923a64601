"""Encoding and decoding of wire messages: JSON bytes in, validated messages out, one error type."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec

from shared.errors import DecodeError, TopicError
from shared.messages import MESSAGE_TYPES, Message, Wire
from shared.topics import Topics

MAX_PAYLOAD_BYTES = 256 * 1024
M = TypeVar("M", bound=msgspec.Struct)

_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(message: msgspec.Struct) -> bytes:
    """Serialise a message to compact JSON bytes."""
    return _ENCODER.encode(message)


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


def decode(model: type[M], payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> M:
    """Validate `payload` as `model`; raise DecodeError with a reason code on anything wrong.

    >>> from shared.messages import Command
    >>> decode(Command, b'{"ts": 1.0, "cmd": "reboot"}')
    Traceback (most recent call last):
    shared.errors.DecodeError: schema: Command: Invalid enum value 'reboot' - at `$.cmd`
    """
    if len(payload) > max_bytes:
        raise DecodeError("too_large", f"{len(payload)} bytes exceeds the limit of {max_bytes}")
    decoder = _DECODERS.get(model)
    if decoder is None:
        decoder = _DECODERS[model] = msgspec.json.Decoder(model)
    try:
        message: M = decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError("schema", f"{model.__name__}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError("bad_json", str(exc)) from None
    return message


def decode_topic(topics: Topics, topic: str, payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Wire:
    """Decode a payload received on `topic`, checking that a device message names the topic's device."""
    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        raise DecodeError("unknown_topic", str(exc)) from None
    message = decode(MESSAGE_TYPES[parsed.kind], payload, max_bytes=max_bytes)
    if isinstance(message, Message) and message.device_id != parsed.device_id:
        raise DecodeError(
            "device_mismatch", f"payload names device {message.device_id!r} on a topic of {parsed.device_id!r}"
        )
    return message

"""What one inbound MQTT message becomes: a record to store or a dead letter with a reason. Pure; no I/O.

Reason codes are `DecodeError.reason` (``too_large``, ``bad_json``, ``bad_msgpack``, ``content_type``,
``schema``, ``device_mismatch``, ``unknown_topic``) plus the hub's: ``retained`` (a device retained a data
message, which the broker would replay to every new subscriber),
``clock_skew`` (a message stamped more than `max_skew_s` after the hub
received it: a device clock gone wrong, or a message built to sort after everything else), ``rate_limited``
(`hub.mqtt.ratelimit`) and ``internal`` (a bug: the message is kept for a look). A status from the future is
not refused but stamped with the hub's receive time, so presence keeps following the device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hub.labels.attribution import device_annotator
from hub.store.rows import DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, DeviceMessage, IngestRecord
from shared.codec import MAX_PAYLOAD_BYTES, WireFormat, decode_parsed, decode_untyped, format_of
from shared.errors import DecodeError, TopicError
from shared.messages import Annotation, Message, Status
from shared.topics import DEVICE_TO_HUB, Kind, Topics
from shared.wire import replace

UNKNOWN = "unknown"
MAX_SKEW_S = 300.0
"""Default of how far ahead of the hub's clock a device's ``ts`` may be (`HubSettings.max_clock_skew_s`)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The outcome for one message: exactly one of `record` and `dead_letter`."""

    kind: str  # the topic's kind as the store names it (``anomaly``, ``model_event`` …) or ``unknown``
    record: IngestRecord | None = None
    dead_letter: DeadLetter | None = None
    seq: int | None = None  # a dead letter's claimed seq: acknowledged too, so the device stops resending it


def dead_letter(
    topic: str, payload: bytes, reason: str, detail: str, received_at: float, device_id: str | None = None
) -> DeadLetter:
    """A dead letter keeping the first DEAD_LETTER_PAYLOAD_BYTES of `payload` and its full size."""
    return DeadLetter(topic, bytes(payload[:DEAD_LETTER_PAYLOAD_BYTES]), reason, detail, received_at, len(payload),
                      device_id)


def decode_message(
    topics: Topics,
    topic: str,
    payload: bytes,
    *,
    retained: bool,
    received_at: float,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    max_skew_s: float = MAX_SKEW_S,
    content_type: str | None = None,
) -> Decoded:
    """Validate a message from a device topic, in the wire format its MQTT `content_type` names (none: JSON);
    anything that is not a valid device → hub message is refused.

    >>> t = Topics("fleetloop")
    >>> d = decode_message(t, "fleetloop/dev-1/anomaly", b"{", retained=False, received_at=0.0)
    >>> d.kind, d.dead_letter.reason, d.dead_letter.device_id
    ('anomaly', 'bad_json', 'dev-1')
    >>> decode_message(t, "elsewhere/x", b"{}", retained=False, received_at=0.0).dead_letter.reason
    'unknown_topic'
    >>> late = b'{"schema_version": 1, "device_id": "dev-1", "ts": 9e9, "state": "online"}'
    >>> decode_message(t, "fleetloop/dev-1/status", late, retained=True, received_at=5.0).record.message.ts
    5.0
    """
    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        return Decoded(UNKNOWN, dead_letter=dead_letter(topic, payload, "unknown_topic", str(exc), received_at))
    kind, device_id = parsed.kind, parsed.device_id
    name = kind.name.lower()
    if kind not in DEVICE_TO_HUB:
        detail = f"{kind.value} is a hub → device topic; the hub does not ingest it"
        return Decoded(name, dead_letter=dead_letter(topic, payload, "unknown_topic", detail, received_at,
                                                           device_id))
    if retained and kind is not Kind.STATUS:
        detail = f"a retained {kind.value} message: only status is retained (the broker would replay it forever)"
        return Decoded(name, dead_letter=dead_letter(topic, payload, "retained", detail, received_at, device_id))
    fmt: WireFormat = "json"
    try:
        fmt = format_of(content_type)
        message = decode_parsed(parsed, payload, max_bytes=max_bytes, fmt=fmt)
    except DecodeError as exc:
        seq = claimed_seq(payload, fmt) if len(payload) <= max_bytes and exc.reason != "content_type" else None
        return Decoded(name, dead_letter=dead_letter(topic, payload, exc.reason, exc.detail, received_at,
                                                           device_id), seq=seq)
    assert isinstance(message, Message)  # every DEVICE_TO_HUB kind decodes to a device Message
    device_message: DeviceMessage = message  # type: ignore[assignment]
    if isinstance(device_message, Annotation):
        device_message = attribute(device_message)
    if device_message.ts > received_at + max_skew_s:
        if isinstance(device_message, Status):  # presence follows the hub's clock when the device's is implausible
            device_message = replace(device_message, ts=received_at)
        else:
            detail = (f"ts {device_message.ts!r} is {device_message.ts - received_at:.0f} s ahead of the hub's clock "
                      f"(at most {max_skew_s:.0f} s allowed)")
            return Decoded(name, dead_letter=dead_letter(topic, payload, "clock_skew", detail, received_at, device_id),
                           seq=device_message.seq)
    return Decoded(name, record=IngestRecord(device_message, received_at))


def claimed_seq(payload: bytes, fmt: WireFormat = "json") -> int | None:
    """The ``seq`` a refused payload claims, if it is an object (in `fmt`) with a valid one, else None.

    The hub acknowledges the seq of a message it dead-lettered (it was received and recorded): otherwise the
    device keeps it and resends it forever. A retained message is not acknowledged (the broker replays it).

    >>> claimed_seq(b'{"seq": 7, "oops": 1}'), claimed_seq(b'{"seq": true}'), claimed_seq(b"\\xff"), claimed_seq(b"[1]")
    (7, None, None, None)
    """
    try:
        data = json.loads(payload) if fmt == "json" else decode_untyped(payload, fmt)
    except (ValueError, RecursionError, DecodeError):  # UnicodeDecodeError is a ValueError; deep nesting recurses
        return None
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq < 2**63 else None


def attribute(a: Annotation) -> Annotation:
    """A device-sent annotation speaks for its device, not for the technician it names
    (`hub.labels.attribution`); the claimed technician is kept at the head of the note.

    >>> a = Annotation(device_id="d-1", ts=1.0, trace_id="t", label="fault", technician_id="alice")
    >>> b = attribute(a)
    >>> b.technician_id, b.note
    ('device:d-1', 'technician (claimed by the device): alice')
    """
    claimed = f"technician (claimed by the device): {a.technician_id}"
    note = claimed if not a.note else f"{claimed}\n{a.note}"
    return replace(a, technician_id=device_annotator(a.device_id), note=note[:2000])

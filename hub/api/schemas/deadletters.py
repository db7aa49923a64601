"""Bodies of ``/dead-letters``: messages the hub refused, and how many of each reason."""

from __future__ import annotations

from pydantic import Field

from hub.api.schemas.base import Public
from hub.store.rows import DeadLetterRow


class DeadLetterPublic(Public):
    """One refused message: when, where from, why, and its first bytes (as text, or hex when binary)."""

    id: int
    ts: float
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload_excerpt: str = Field(description="the first bytes kept by the hub: as UTF-8 text (a character cut at the "
                                 "end replaced), or ``hex:`` and their hex digits when they are binary (MessagePack)")
    payload_size: int

    @classmethod
    def from_row(cls, row: DeadLetterRow) -> DeadLetterPublic:
        return cls(id=row.id, ts=row.ts, topic=row.topic, device_id=row.device_id, reason=row.reason,
                   detail=row.detail, payload_excerpt=excerpt(row.payload[:512]), payload_size=row.payload_size)


def excerpt(head: bytes) -> str:
    """`head` as text when it is UTF-8 (but for a character cut at its end), else ``hex:`` and its hex digits.

    >>> excerpt(b'{"a": 1}'), excerpt("é".encode()[:1]), excerpt(b"\\x81\\xa3seq\\x07")
    ('{"a": 1}', '\\ufffd', 'hex:81a373657107')
    """
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return head.decode("utf-8", "replace")
        return "hex:" + head.hex()

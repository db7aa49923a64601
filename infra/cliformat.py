"""What the command lines read and print: times (ISO 8601, relative ``-2h`` or unix seconds) and aligned tables.

An operator types times the way they read them in logs; a script passes unix seconds. Times without a zone
are UTC (what the CLIs print), so a time copied from the output means the same instant when typed back.
Tables are plain columns rather than terminal-sized ones, so piped output is never wrapped or cut.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from shared.errors import ConfigError

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
FORMATS = "an ISO time (2024-11-23T10:00:00Z; no zone means UTC), a relative one (-30m, -2h, -1d, now) or unix seconds"


def parse_time(text: str, now: float) -> float:
    """`text` as unix seconds; ConfigError naming the accepted forms if it is none of them.

    >>> parse_time("-2h", now=10_000.0)
    2800.0
    >>> parse_time("1970-01-01T01:00:00Z", now=0.0)
    3600.0
    >>> parse_time("1732350000", now=0.0)
    1732350000.0
    """
    value = text.strip()
    if value.lower() == "now":
        return now
    relative = _RELATIVE.match(value.lower())
    if relative:
        return now - float(relative.group(1)) * _UNIT_S[relative.group(2)]
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ConfigError(f"cannot read the time {text!r}: give {FORMATS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def accept_relative_times(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let `parser` take ``-2h`` or ``-30m`` as a value: argparse reads any ``-x`` as an option, except negative
    numbers, which it recognises with this (undocumented, long-stable) pattern; relative times join them."""
    parser._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+(?:\.\d+)?[smhdw]$")
    return parser


def iso(ts: float | None) -> str:
    """`ts` as ISO 8601 in UTC to the second (``-`` for None).

    >>> iso(3600.4)
    '1970-01-01T01:00:00Z'
    """
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """`rows` under `headers` in left-aligned columns two spaces apart (None as ``-``); no trailing spaces.

    >>> print(table(["A", "LONGER"], [["x", 1], ["yyyy", None]]))
    A     LONGER
    x     1
    yyyy  -
    """
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)

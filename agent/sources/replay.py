"""Replay sources: recorded sensor data streamed from files, optionally paced in real time.

`CmapssSource` reads NASA C-MAPSS run-to-failure text files; `CsvSource` reads delimited files such as
SKAB. A row that cannot be parsed is counted in `bad_rows`, logged (rate-limited) and skipped: a replay
never raises once it is open.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import numpy as np

from agent.sources.base import Reading
from infra.datasets import CMAPSS_SENSORS, LABEL_COLUMNS
from shared.errors import SourceError

log = logging.getLogger(__name__)

_DELIMITERS = (";", ",", "\t", "|")
_LOG_FIRST = 5  # bad rows logged one by one; after that only every _LOG_EVERY-th
_LOG_EVERY = 1000


class _Pacer:
    """Releases one reading every 1/rate seconds; rate 0 means as fast as the caller reads."""

    def __init__(self, rate: float) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise SourceError(f"rate must be a finite number of readings per second >= 0, not {rate}")
        self.period = 1.0 / rate if rate > 0 else 0.0
        self._due: float | None = None

    def wait_turn(self, timeout: float) -> bool:
        """Sleep until the next reading is due, or return False after `timeout` if it is not due by then."""
        if not self.period:
            return True
        now = time.monotonic()
        due = now if self._due is None else self._due
        if due - now > timeout:
            time.sleep(max(timeout, 0.0))
            return False
        if due > now:
            time.sleep(due - now)
        # A slow reader does not earn a burst: the next slot counts from now at the earliest.
        self._due = max(due, now) + self.period
        return True


class _Hold:
    """How many readings a replay may release, read from a file someone else writes (missing or unreadable: 0)."""

    POLL_S = 0.01

    def __init__(self, path: Path) -> None:
        self.path = path
        self._allowed = 0

    def allows(self, n: int, timeout: float) -> bool:
        """Whether reading `n` (1-based) may go, waiting up to `timeout` for the file to allow it."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if n <= self._allowed:
                return True
            with contextlib.suppress(OSError, ValueError):  # not written yet, or mid-write: ask again
                self._allowed = int(self.path.read_text(encoding="utf-8").strip() or 0)
            if n <= self._allowed:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.POLL_S, left))


class _FileSource:
    """Streaming, pacing and bad-row accounting shared by the file sources."""

    sensors: list[str]
    bad_rows: int

    def __init__(self, path: str | os.PathLike[str], rate: float, what: str,
                 hold_path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.bad_rows = 0
        self._pacer = _Pacer(rate)
        self._hold = None if hold_path is None else _Hold(Path(hold_path))
        self.released = 0
        self._exhausted = False
        try:
            self._file: IO[str] = open(self.path, encoding="utf-8-sig", errors="replace", newline="")  # noqa: SIM115
        except FileNotFoundError:
            raise SourceError(f"{what} file {self.path} does not exist") from None
        except OSError as exc:
            raise SourceError(f"cannot open {what} file {self.path}: {exc.strerror or exc}") from None

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def read(self, timeout: float) -> Reading | None:
        if self._exhausted:
            return None
        if self._hold is not None and not self._hold.allows(self.released + 1, timeout):
            return None
        if not self._pacer.wait_turn(timeout):
            return None
        try:
            reading = self._next_reading()
        except OSError as exc:
            log.error("%s: read failed, ending the replay: %s", self.path, exc)
            reading = None
        if reading is None:
            self.close()
        else:
            self.released += 1
        return reading

    def __iter__(self) -> Iterator[Reading]:
        """Every remaining reading (paced if a rate was given)."""
        while not self._exhausted:
            reading = self.read(timeout=3600.0)
            if reading is not None:
                yield reading

    def close(self) -> None:
        self._exhausted = True
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _next_reading(self) -> Reading | None:
        raise NotImplementedError

    def _bad(self, line: int, why: str) -> None:
        self.bad_rows += 1
        if self.bad_rows <= _LOG_FIRST:
            log.warning("%s:%d: skipped a bad row (%s)%s", self.path, line, why,
                        f"; further bad rows are logged every {_LOG_EVERY}" if self.bad_rows == _LOG_FIRST
                        else "")
        elif self.bad_rows % _LOG_EVERY == 0:
            log.warning("%s:%d: %d bad rows skipped so far (latest: %s)", self.path, line, self.bad_rows, why)


class CmapssSource(_FileSource):
    """NASA C-MAPSS text (26 space-separated columns: unit, cycle, 3 settings, 21 sensors).

    `ts` is the cycle number and `unit` the engine id, so windows never span two engines. `units`
    keeps only those engines (ids as int or str).

    With `start_ts`, `ts` is a clock instead: the i-th reading replayed (0-based, after the unit filter) is
    stamped ``start_ts + i / rate`` (``start_ts + i`` when `rate` is 0), so engines replayed one after the
    other get increasing, plausible timestamps and a reading's position in the replay is ``(ts - start_ts)
    * rate``. Windows still never span two engines: they are kept apart by `unit`, not by time.

    With `hold_path`, the replay releases only as many readings as that file says (see `_Hold`).
    """

    def __init__(self, path: str | os.PathLike[str], units: Iterable[int | str] | None = None,
                 rate: float = 0.0, *, start_ts: float | None = None,
                 hold_path: str | os.PathLike[str] | None = None) -> None:
        try:
            self.units = None if units is None else {str(int(u)) for u in units}
        except ValueError:
            raise SourceError(f"C-MAPSS unit ids are integers, not {units!r}") from None
        if start_ts is not None and not math.isfinite(start_ts):
            raise SourceError(f"start_ts must be a finite time, not {start_ts}")
        super().__init__(path, rate, "C-MAPSS", hold_path)
        self.sensors = list(CMAPSS_SENSORS)
        self.start_ts = start_ts
        self._clock_rate = rate if rate > 0 else 1.0
        self._replayed = 0
        self._line = 0

    def _next_reading(self) -> Reading | None:
        width = 2 + len(self.sensors)
        for text in self._file:
            self._line += 1
            fields = text.split()
            if not fields:
                continue
            if len(fields) != width:
                self._bad(self._line, f"{len(fields)} columns instead of {width}")
                continue
            try:
                unit = str(int(fields[0]))
                cycle = float(fields[1])
                values = np.array([float(f) for f in fields[2:]], dtype=np.float64)
            except ValueError as exc:
                self._bad(self._line, str(exc))
                continue
            if self.units is not None and unit not in self.units:
                continue
            if self.start_ts is not None:
                cycle = self.start_ts + self._replayed / self._clock_rate
            self._replayed += 1
            return Reading(ts=cycle, values=values, unit=unit)
        return None


class CsvSource(_FileSource):
    """A delimited file with a header row and one timestamp column, such as SKAB.

    `sensors` defaults to every column except the time and unit columns and known label columns
    (`LABEL_COLUMNS`, case-insensitive). `delimiter` None picks the most frequent of ``; , TAB |`` in
    the header. Times are epoch seconds or ISO 8601, or parsed with `time_format` (strptime); times
    without a zone are taken as UTC. An empty field becomes NaN; an unparsable one makes the row bad.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        time_column: str = "datetime",
        sensors: Iterable[str] | None = None,
        delimiter: str | None = None,
        rate: float = 0.0,
        time_format: str | None = None,
        *,
        unit_column: str | None = None,
        unit: str | None = None,
    ) -> None:
        super().__init__(path, rate, "CSV")
        try:
            self._setup(time_column, sensors, delimiter, unit_column)
        except BaseException:
            self._file.close()
            raise
        self.time_format = time_format
        self.unit = unit

    def _setup(self, time_column: str, sensors: Iterable[str] | None, delimiter: str | None,
               unit_column: str | None) -> None:
        first = self._file.readline()
        if not first.strip():
            raise SourceError(f"CSV file {self.path} has no header row")
        if delimiter is None:
            delimiter = max(_DELIMITERS, key=first.count)
        self.delimiter = delimiter
        self.header = [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]
        if len(set(self.header)) != len(self.header):
            raise SourceError(f"CSV file {self.path} repeats a column name: {self.header}")
        position = {name: i for i, name in enumerate(self.header)}

        def column(name: str, role: str) -> int:
            if name not in position:
                raise SourceError(f"CSV file {self.path} has no {role} column {name!r}; columns "
                                  f"(delimiter {delimiter!r}): {self.header}")
            return position[name]

        self._time_at = column(time_column, "time")
        self._unit_at = column(unit_column, "unit") if unit_column else None
        if sensors is None:
            skip = {time_column, unit_column}
            self.sensors = [n for n in self.header if n not in skip and n.lower() not in LABEL_COLUMNS]
        else:
            self.sensors = list(sensors)
        if not self.sensors:
            raise SourceError(f"CSV file {self.path} has no sensor columns besides time, unit and labels")
        self._sensor_at = [column(name, "sensor") for name in self.sensors]
        self._rows = csv.reader(self._file, delimiter=delimiter)

    def _next_reading(self) -> Reading | None:
        width = len(self.header)
        for row in self._rows:
            line = self._rows.line_num + 1  # +1 for the header read before the reader existed
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                self._bad(line, f"{len(row)} fields instead of {width}")
                continue
            try:
                ts = self._parse_time(row[self._time_at])
                values = np.array([_number(row[i]) for i in self._sensor_at], dtype=np.float64)
            except ValueError as exc:
                self._bad(line, str(exc))
                continue
            unit = self.unit
            if self._unit_at is not None:
                unit = row[self._unit_at].strip() or None
            return Reading(ts=ts, values=values, unit=unit)
        return None

    def _parse_time(self, text: str) -> float:
        text = text.strip()
        if self.time_format is None:
            try:
                ts = float(text)
            except ValueError:
                ts = _epoch(datetime.fromisoformat(text))
        else:
            ts = _epoch(datetime.strptime(text, self.time_format))
        if not math.isfinite(ts):
            raise ValueError(f"time {text!r} is not finite")
        return ts


def _number(text: str) -> float:
    text = text.strip()
    return float(text) if text else math.nan


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

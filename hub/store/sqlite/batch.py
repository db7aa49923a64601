"""What a batch of device messages becomes in the hub's tables: row tuples per table. Pure; no database.

Anything a SQL store cannot hold although the wire contract allows it (a count beyond 64 bits) is
returned as `Rejected`, so the caller dead-letters that one message instead of failing the batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from hub.store.rollup import counts_blob, layout_of
from hub.store.rows import IngestRecord, IngestResult, Rejected
from shared.messages import Annotation, Anomaly, ModelEvent, RawWindow, Sample, Stats, Status

INT64_MAX = 2**63 - 1
_JSON = msgspec.json.Encoder()  # compact JSON, ~8x json.dumps on a stats row's histograms; readers json.loads it


def _json_text(value: Any) -> str:
    return _JSON.encode(value).decode()

_COUNTS = ("windows", "anomalies", "samples", "bad_readings", "bad_rows", "inference_errors", "nan_scores")


@dataclass
class BatchRows:
    """Row tuples in the column order of the INSERTs in `hub.store.sqlite.ingest`."""

    anomalies: list[tuple[Any, ...]] = field(default_factory=list)
    samples: list[tuple[Any, ...]] = field(default_factory=list)
    stats: list[tuple[Any, ...]] = field(default_factory=list)
    annotations: list[tuple[Any, ...]] = field(default_factory=list)
    model_events: list[tuple[Any, ...]] = field(default_factory=list)
    windows: list[tuple[Any, ...]] = field(default_factory=list)  # raw windows (`hub.store.sqlite.windows`)
    statuses: list[IngestRecord] = field(default_factory=list)  # applied one by one (presence ordering)
    seen: dict[str, tuple[float, float]] = field(default_factory=dict)  # device -> (newest received_at, ts)
    rejected: tuple[Rejected, ...] = ()


def features_blob(values: Sequence[float]) -> bytes:
    """Little-endian float64: lossless for whatever the device sent (agents compute float32)."""
    return np.asarray(values, dtype="<f8").tobytes()


def features_from_blob(blob: bytes) -> tuple[float, ...]:
    return tuple(np.frombuffer(blob, dtype="<f8").tolist())


def out_of_range(stats: Stats) -> str | None:
    """Counts SQLite (and numpy's int64 sketches) cannot hold; the wire contract bounds them only below."""
    for name in _COUNTS:
        if getattr(stats, name) > INT64_MAX:
            return f"{name} exceeds 2**63 - 1"
    if max(stats.score_hist, default=0) > INT64_MAX or max(map(_row_max, stats.feature_hist), default=0) > INT64_MAX:
        return "a histogram count exceeds 2**63 - 1"
    return None


def _row_max(row: Sequence[int]) -> int:
    return max(row, default=0)


def batch_rows(records: Sequence[IngestRecord]) -> BatchRows:
    """Split `records` into per-table rows, the devices they show activity for, and what is rejected."""
    out = BatchRows()
    rejected: list[Rejected] = []
    for i, record in enumerate(records):
        m, at = record.message, record.received_at
        if isinstance(m, Stats) and (problem := out_of_range(m)):
            rejected.append(Rejected(i, "out_of_range", problem))
            continue
        if isinstance(m, Anomaly | Sample):
            kind = "anomaly" if isinstance(m, Anomaly) else "sample"
            (out.anomalies if kind == "anomaly" else out.samples).append((
                m.trace_id, m.msg_id, kind, m.device_id, m.ts, at, m.model_version, m.unit, m.window_start,
                m.window_end, m.score, m.threshold, int(m.decision), _reason(m),
                len(m.features), features_blob(m.features),
            ))
        elif isinstance(m, Stats):
            out.stats.append((
                m.msg_id, m.device_id, m.ts, at, m.model_version, m.period_start, m.period_end, m.windows,
                m.anomalies, m.samples, m.bad_readings, m.bad_rows, m.inference_errors, m.nan_scores,
                _json_text(m.feature_hist), _json_text(m.score_hist), m.latency_p50_ms, m.latency_p99_ms,
                layout_of(m.feature_hist, m.score_hist), counts_blob(m.feature_hist, m.score_hist),
            ))
        elif isinstance(m, Annotation):
            out.annotations.append((
                m.annotation_id, m.msg_id, m.device_id, m.ts, at, m.model_version, m.trace_id, m.start_ts,
                m.end_ts, m.label, m.fault_type, m.technician_id, m.confidence, m.signal, m.note,
            ))
        elif isinstance(m, ModelEvent):
            out.model_events.append((
                m.msg_id, m.device_id, m.ts, at, m.model_version, m.event, m.version, m.detail, _json_text(m.metrics),
            ))
        elif isinstance(m, RawWindow):
            body = json.dumps({"sensors": m.sensors, "timestamps": m.timestamps, "values": m.values,
                               "service": m.service})
            out.windows.append((m.trace_id, m.device_id, "stored" if m.available else "unavailable", at, at, m.unit,
                                body if m.available else None))
        elif isinstance(m, Status):
            out.statuses.append(record)
        else:  # pragma: no cover - DeviceMessage is exhaustive
            rejected.append(Rejected(i, "unsupported", f"cannot store {type(m).__name__}"))
            continue
        newest = out.seen.get(m.device_id)
        out.seen[m.device_id] = (at, m.ts) if newest is None else (max(newest[0], at), max(newest[1], m.ts))
    out.rejected = tuple(rejected)
    return out


def _reason(m: Anomaly | Sample) -> str | None:
    """A sample's reason; ``random`` for an anomaly also drawn into the random slice, so the slice stays unbiased."""
    if isinstance(m, Sample):
        return m.reason
    return "random" if m.sampled else None


def ingest_result(rows: BatchRows, stored: dict[str, int], duplicates: dict[str, int], status_applied: int,
                  dead_letters: int) -> IngestResult:
    """What a batch did, from the counts its write returned (both backends): a status not applied was older than
    what the store holds, or a redelivery."""
    stored, duplicates = dict(stored), dict(duplicates)
    if status_applied:
        stored["status"] = status_applied
    if len(rows.statuses) > status_applied:
        duplicates["status"] = len(rows.statuses) - status_applied
    return IngestResult(
        stored={k: v for k, v in stored.items() if v},
        duplicates={k: v for k, v in duplicates.items() if v},
        status_applied=status_applied,
        status_ignored=len(rows.statuses) - status_applied,
        dead_letters=dead_letters,
        rejected=rows.rejected,
    )

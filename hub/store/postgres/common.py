"""What more than one role's PostgreSQL queries share: row decoders and the bound on stored text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hub.store.postgres.connection import Row
from hub.store.rows import AnnotationRow, PredictionRow
from hub.store.sqlite.batch import features_from_blob
from hub.store.sqlite.common import DETAIL_CHARS

PREDICTION_COLUMNS = (
    "trace_id, msg_id, kind, device_id, ts, received_at, model_version, unit, window_start, window_end, score, "
    "threshold, decision, reason, features"
)
"""The columns `prediction_from_row` decodes, in its order (``p.`` prefixed where a query joins)."""
ANNOTATION_COLUMNS = (
    "annotation_id, msg_id, device_id, ts, received_at, model_version, trace_id, start_ts, end_ts, label, "
    "fault_type, technician_id, confidence, signal, note"
)


def decoded(r: Row, **by_index: Callable[[Any], Any]) -> list[Any]:
    """The row's values, those at the given indices (``_12=bool``) passed through their decoder (JSON, …)."""
    values = list(r)
    for key, decode in by_index.items():
        values[int(key[1:])] = decode(values[int(key[1:])])
    return values


def json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def prediction_from_row(r: Row) -> PredictionRow:
    """A row of `PREDICTION_COLUMNS` as a `PredictionRow`."""
    return PredictionRow(*decoded(r, _12=bool, _14=lambda b: features_from_blob(bytes(b)))[:15])


def annotation_from_row(r: Row) -> AnnotationRow:
    """A row of `ANNOTATION_COLUMNS` as an `AnnotationRow`."""
    return AnnotationRow(*r)


def prefixed(columns: str, alias: str) -> str:
    """`columns` qualified by a table alias, for joins and correlated subqueries."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


__all__ = ["ANNOTATION_COLUMNS", "DETAIL_CHARS", "PREDICTION_COLUMNS", "annotation_from_row", "decoded", "json_or_none",
           "prediction_from_row", "prefixed"]

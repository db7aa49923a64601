"""What more than one role's SQLite queries share: bounds on stored text and row decoders."""

from __future__ import annotations

import sqlite3

from hub.store.rows import AnnotationRow, PredictionRow
from hub.store.sqlite.batch import features_from_blob

DETAIL_CHARS = 2000
"""How much of a dead letter's or an exclusion's detail is kept."""


def prediction_from_row(r: sqlite3.Row) -> PredictionRow:
    """A `predictions` row (``SELECT *``) as a `PredictionRow`."""
    return PredictionRow(
        r["trace_id"], r["msg_id"], r["kind"], r["device_id"], r["ts"], r["received_at"], r["model_version"],
        r["unit"], r["window_start"], r["window_end"], r["score"], r["threshold"], bool(r["decision"]), r["reason"],
        features_from_blob(r["features"]),
    )


def annotation_from_row(r: sqlite3.Row) -> AnnotationRow:
    """An `annotations` row (``SELECT *``) as an `AnnotationRow`."""
    return AnnotationRow(
        r["annotation_id"], r["msg_id"], r["device_id"], r["ts"], r["received_at"], r["model_version"], r["trace_id"],
        r["start_ts"], r["end_ts"], r["label"], r["fault_type"], r["technician_id"], r["confidence"], r["signal"],
        r["note"],
    )

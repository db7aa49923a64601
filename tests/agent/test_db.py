"""The agent database on real SQLite files: atomic batches, outbox order, retention bounds."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.db import (
    PRIORITY_ANNOTATION,
    PRIORITY_ANOMALY,
    PRIORITY_SAMPLE,
    PRIORITY_STATS,
    AgentDB,
    OutboxMessage,
    PredictionRow,
    RawWindowRow,
)
from shared.ids import new_id


def _row(i: int) -> PredictionRow:
    return PredictionRow(new_id(), "dev-1", float(i), None, 0.0, float(i), "v1",
                         np.zeros(36, dtype=np.float32).tobytes(), 0.1, False)


def _msg(priority: int, topic: str = "t") -> OutboxMessage:
    return OutboxMessage(new_id(), topic, b"{}", priority)


def test_migrations_are_idempotent_and_wal(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    db.close()
    db = AgentDB(tmp_path / "a.db")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"predictions", "outbox", "annotations", "state"} <= set(db.table_names())


def test_outbox_orders_by_priority_then_age(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    db.enqueue([_msg(PRIORITY_SAMPLE, "s1"), _msg(PRIORITY_STATS, "st"), _msg(PRIORITY_ANOMALY, "a1"),
                _msg(PRIORITY_ANNOTATION, "n"), _msg(PRIORITY_ANOMALY, "a2")])
    assert [r.topic for r in db.due_outbox(now=1e12, limit=10)] == ["n", "a1", "a2", "st", "s1"]
    first = db.due_outbox(now=1e12, limit=2)
    assert [r.topic for r in db.due_outbox(now=1e12, limit=2, exclude=[r.id for r in first])] == ["a2", "st"]


def test_backoff_hides_rows_until_due(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    db.enqueue([_msg(PRIORITY_ANOMALY)])
    row = db.due_outbox(now=100.0, limit=1)[0]
    db.mark_attempt(row.id, next_attempt=160.0)
    assert db.due_outbox(now=150.0, limit=1) == []
    again = db.due_outbox(now=160.0, limit=1)[0]
    assert again.attempts == 1
    db.delete_outbox([again.id])
    assert db.outbox_size() == 0


def test_trim_drops_lowest_priority_first(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    db.enqueue([_msg(PRIORITY_SAMPLE)] * 5 + [_msg(PRIORITY_ANOMALY)] * 3)
    assert db.trim_outbox(4) == 4
    assert sorted(r.priority for r in db.due_outbox(1e12, 10)) == [1, 1, 1, 4]


def test_batch_is_atomic(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    rows = [_row(i) for i in range(3)]
    db.write_batch(rows, [_msg(PRIORITY_ANOMALY)])
    with pytest.raises(sqlite3.IntegrityError):  # payload NOT NULL fails after the prediction was inserted
        db.write_batch([_row(9)], [OutboxMessage(new_id(), "t", None, 1)])  # type: ignore[arg-type]
    assert db.prediction_count() == 3  # the failed batch left nothing behind
    assert db.outbox_size() == 1
    assert db.prediction(rows[1].trace_id)["model_version"] == "v1"  # type: ignore[index]


def test_a_plain_row_of_bind_ready_values_stores_the_same_as_a_prediction_row(tmp_path):
    """The hot path's spelling (0 and NaN for NULL, 0/1, bytearray) and the readable one give the same row."""
    db = AgentDB(tmp_path / "a.db")
    features = np.arange(36, dtype=np.float32).tobytes()
    readable = [PredictionRow(new_id(), "dev-1", 5.0, None, 1.0, 2.0, "v1", features, None, True),
                PredictionRow(new_id(), "dev-1", 5.0, "0", 1.0, 2.0, "v1", features, 0.25, False, "v2", 0.5,
                              "random")]
    plain = [(new_id(), "dev-1", 5.0, 0, 1.0, 2.0, "v1", bytearray(features), math.nan, 1, 0, math.nan, 0),
             (new_id(), "dev-1", 5.0, "0", 1.0, 2.0, "v1", bytearray(features), 0.25, 0, "v2", 0.5, "random")]
    db.write_batch([*readable, *plain], [])
    for a, b in zip(readable, plain, strict=True):
        got_a, got_b = db.prediction(a.trace_id), db.prediction(b[0])
        assert got_a is not None and got_b is not None
        for row in (got_a, got_b):
            del row["id"], row["trace_id"]
        assert got_a == got_b
    nulls = db.prediction(plain[0][0])
    assert nulls is not None
    assert (nulls["unit"], nulls["score"], nulls["shadow_version"], nulls["shadow_score"], nulls["reported"]) == \
        (None,) * 5
    assert nulls["features"] == features and nulls["decision"] == 1
    assert db.prediction(plain[1][0])["unit"] == "0"  # type: ignore[index]  # a text "0" is a unit, not NULL


def test_retention_by_rows_keeps_newest(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    rows = [_row(i) for i in range(50)]
    db.write_batch(rows, [])
    assert db.enforce_retention(max_rows=20, max_bytes=10**9) == 30
    assert db.prediction_count() == 20
    assert db.prediction(rows[0].trace_id) is None
    assert db.prediction(rows[-1].trace_id) is not None


def test_retention_by_bytes_bounds_the_file(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    for _ in range(20):
        db.write_batch([_row(i) for i in range(500)], [])
    limit = 400_000
    assert db.used_bytes() > limit
    db.enforce_retention(max_rows=10**9, max_bytes=limit)
    assert db.used_bytes() <= limit
    assert db.prediction_count() > 0


def _raw(trace_id: str, ts: float, *, alarm: bool, service: int | None = None) -> RawWindowRow:
    return RawWindowRow(trace_id, ts, "u1", '["a"]', np.array([ts]).tobytes(), np.array([ts]).tobytes(), alarm,
                        service)


def test_random_samples_never_crowd_the_alarms_raw_windows_out(tmp_path):
    """Two rings of `keep` each: a flood of newer samples leaves the older alarms, and a full disk takes samples
    first."""
    db = AgentDB(tmp_path / "a.db")
    db.write_batch((), (), [_raw(f"a{i}", float(i), alarm=True) for i in range(6)]
                   + [_raw(f"s{i}", 100.0 + i, alarm=False, service=i) for i in range(20)])
    assert db.prune_raw_windows(4) == 2 + 16
    kept = [r[0] for r in db.conn.execute("SELECT trace_id FROM raw_windows ORDER BY ts")]
    assert kept == ["a2", "a3", "a4", "a5", "s16", "s17", "s18", "s19"]
    assert db.raw_window("s17") == _raw("s17", 117.0, alarm=False, service=17)
    assert db.raw_window("a3") == _raw("a3", 3.0, alarm=True)
    db.drop_for_space(min_priority=PRIORITY_SAMPLE, share=0.5, at_least=4)
    assert [r[0] for r in db.conn.execute("SELECT trace_id FROM raw_windows ORDER BY ts")] == ["a2", "a3", "a4", "a5"]
    db.close()


def test_the_raw_window_rings_keep_the_last_written_and_zero_keeps_none(tmp_path):
    """A batch's windows share one ts: the rings keep the last `keep` written of each kind, ties included."""
    db = AgentDB(tmp_path / "a.db")
    db.write_batch((), (), [_raw(f"a{i}", 5.0, alarm=True) for i in range(5)]
                   + [_raw(f"s{i}", 5.0, alarm=False) for i in range(3)])
    assert db.prune_raw_windows(2) == 3 + 1
    kept = [r[0] for r in db.conn.execute("SELECT trace_id FROM raw_windows ORDER BY rowid")]
    assert kept == ["a3", "a4", "s1", "s2"]
    assert db.prune_raw_windows(2) == 0  # nothing beyond the rings
    assert db.prune_raw_windows(0) == 4
    assert db.conn.execute("SELECT count(*) FROM raw_windows").fetchone()[0] == 0
    db.close()


def test_state_set_and_delete(tmp_path):
    db = AgentDB(tmp_path / "a.db")
    db.set_state({"a": "1", "b": "2"})
    db.set_state({"a": None, "b": "3"})
    assert (db.get_state("a"), db.get_state("b")) == (None, "3")


def test_a_late_broker_ack_never_marks_a_new_row_that_took_the_acked_rows_id(tmp_path: Path) -> None:
    db = AgentDB(tmp_path / "agent.db")
    db.enqueue([_msg(1)])
    (sent,) = db.stamp_sequences(db.due_outbox(now=1e12, limit=10))
    assert sent.seq is not None and db.delete_sequences([(sent.seq, sent.seq)]) == 1  # the hub acked it first
    db.enqueue([_msg(1)])
    (fresh,) = db.due_outbox(now=1e12, limit=10)
    assert fresh.id == sent.id and fresh.seq is None  # SQLite reused the id of the deleted last row
    db.mark_delivered([(sent.id, sent.seq)], now=1.0, wait_s=120.0, max_wait_s=3600.0)  # the broker's late ack
    assert db.awaiting_hub() == 0 and len(db.due_outbox(now=2.0, limit=10)) == 1  # the new row still goes now
    (stamped,) = db.stamp_sequences(db.due_outbox(now=2.0, limit=10))
    db.mark_delivered([(stamped.id, stamped.seq)], now=3.0, wait_s=120.0, max_wait_s=3600.0)
    assert db.awaiting_hub() == 1
    db.close()

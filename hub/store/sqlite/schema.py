"""The hub database schema, as sqlite-utils migrations (append new ones; never edit an applied one)."""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database, Migrations

from hub.store.rollup import json_row_deltas, running_sums

migrations = Migrations("fleetloop.hub")


@migrations()
def m001_initial(db: Database) -> None:
    # Anomalies and samples in one table: both carry a prediction and its features, keyed by trace_id.
    db.execute(
        """CREATE TABLE predictions (
            trace_id TEXT PRIMARY KEY,
            msg_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('anomaly', 'sample')),
            device_id TEXT NOT NULL,
            ts REAL NOT NULL,
            received_at REAL NOT NULL,
            model_version TEXT,
            unit TEXT,
            window_start REAL NOT NULL,
            window_end REAL NOT NULL,
            score REAL NOT NULL,
            threshold REAL NOT NULL,
            decision INTEGER NOT NULL,
            reason TEXT,
            n_features INTEGER NOT NULL,
            features BLOB NOT NULL
        )"""
    )
    db.execute("CREATE INDEX predictions_ts ON predictions (ts)")
    db.execute("CREATE INDEX predictions_device_ts ON predictions (device_id, ts)")
    db.execute(
        """CREATE TABLE stats (
            msg_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            ts REAL NOT NULL,
            received_at REAL NOT NULL,
            model_version TEXT,
            period_start REAL NOT NULL,
            period_end REAL NOT NULL,
            windows INTEGER NOT NULL,
            anomalies INTEGER NOT NULL,
            samples INTEGER NOT NULL,
            bad_readings INTEGER NOT NULL,
            bad_rows INTEGER NOT NULL,
            inference_errors INTEGER NOT NULL,
            nan_scores INTEGER NOT NULL,
            feature_hist TEXT NOT NULL,
            score_hist TEXT NOT NULL,
            latency_p50_ms REAL,
            latency_p99_ms REAL
        )"""
    )
    db.execute("CREATE INDEX stats_period_end ON stats (period_end)")
    db.execute("CREATE INDEX stats_device_period_end ON stats (device_id, period_end)")
    db.execute(
        """CREATE TABLE annotations (
            annotation_id TEXT PRIMARY KEY,
            msg_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            ts REAL NOT NULL,
            received_at REAL NOT NULL,
            model_version TEXT,
            trace_id TEXT,
            start_ts REAL,
            end_ts REAL,
            label TEXT NOT NULL,
            fault_type TEXT,
            technician_id TEXT NOT NULL,
            confidence REAL NOT NULL,
            signal TEXT NOT NULL,
            note TEXT
        )"""
    )
    db.execute("CREATE INDEX annotations_trace ON annotations (trace_id)")
    db.execute("CREATE INDEX annotations_ts ON annotations (ts)")
    db.execute(
        """CREATE TABLE model_events (
            msg_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            ts REAL NOT NULL,
            received_at REAL NOT NULL,
            model_version TEXT,
            event TEXT NOT NULL,
            version TEXT NOT NULL,
            detail TEXT,
            metrics TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX model_events_device_ts ON model_events (device_id, ts)")
    # The registry: presence from status messages (presence.py decides which wins), activity from all.
    db.execute(
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            online INTEGER NOT NULL DEFAULT 0,
            status_ts REAL,
            status_received REAL,
            first_seen REAL,
            last_seen REAL,
            last_ts REAL,
            model_version TEXT,
            shadow_version TEXT,
            agent_version TEXT,
            site TEXT,
            asset_type TEXT,
            cohort TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            topic TEXT NOT NULL,
            device_id TEXT,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            payload BLOB NOT NULL,
            payload_size INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX dead_letters_reason ON dead_letters (reason, id)")
    db.execute(
        """CREATE TABLE drift_reports (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            scope TEXT NOT NULL,
            verdict TEXT NOT NULL,
            report TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX drift_reports_scope ON drift_reports (scope, id)")
    # Hub events (drift verdicts, …): an append-only log that later stages consume by id.
    db.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX events_kind ON events (kind, id)")


@migrations()
def m002_label_sets(db: Database) -> None:
    # Label sets are content-addressed (ls-<fingerprint prefix>); items and exclusions belong to one set.
    db.execute(
        """CREATE TABLE label_sets (
            id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            created_ts REAL NOT NULL,
            validated_ts REAL NOT NULL,
            summary TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX label_sets_validated ON label_sets (validated_ts)")
    db.execute(
        """CREATE TABLE label_set_items (
            label_set_id TEXT NOT NULL REFERENCES label_sets (id) ON DELETE CASCADE,
            trace_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            label INTEGER NOT NULL,
            weight REAL NOT NULL,
            confidence REAL NOT NULL,
            n_annotations INTEGER NOT NULL,
            cohort TEXT,
            model_version TEXT,
            PRIMARY KEY (label_set_id, trace_id)
        )"""
    )
    db.execute(
        """CREATE TABLE label_exclusions (
            label_set_id TEXT NOT NULL REFERENCES label_sets (id) ON DELETE CASCADE,
            annotation_id TEXT NOT NULL,
            trace_id TEXT,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX label_exclusions_set ON label_exclusions (label_set_id, annotation_id)")
    db.execute("CREATE INDEX label_exclusions_trace ON label_exclusions (label_set_id, trace_id)")
    # Range annotations covering a prediction (queue, trace pages).
    db.execute("CREATE INDEX annotations_device_range ON annotations (device_id, start_ts)")


@migrations()
def m003_registry(db: Database) -> None:
    # The model registry: every version ever made (candidates, rejected ones too) and an audit trail of
    # every status change: who, when, why.
    db.execute(
        """CREATE TABLE model_versions (
            version TEXT PRIMARY KEY,
            parent_version TEXT,
            status TEXT NOT NULL,
            created_ts REAL NOT NULL,
            updated_ts REAL NOT NULL,
            created_by TEXT NOT NULL,
            reason TEXT NOT NULL,
            trigger_id TEXT,
            sha256 TEXT NOT NULL,
            signature TEXT NOT NULL,
            manifest TEXT NOT NULL,
            gate TEXT
        )"""
    )
    db.execute("CREATE INDEX model_versions_status ON model_versions (status, created_ts)")
    db.execute(
        """CREATE TABLE model_audit (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            version TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT,
            reason TEXT NOT NULL,
            details TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX model_audit_version ON model_audit (version, id)")


@migrations()
def m005_rollouts(db: Database) -> None:
    # Staged rollouts: the plan and the pure machine's state as JSON, the last decision, a revision number for
    # optimistic concurrency. At most one rollout runs at a time, whichever hub process starts it.
    db.execute(
        """CREATE TABLE rollouts (
            id TEXT PRIMARY KEY,
            candidate TEXT NOT NULL,
            incumbent TEXT NOT NULL,
            status TEXT NOT NULL,
            created_ts REAL NOT NULL,
            updated_ts REAL NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            plan TEXT NOT NULL,
            state TEXT NOT NULL,
            decision TEXT,
            revision INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX rollouts_created ON rollouts (created_ts)")
    db.execute("CREATE UNIQUE INDEX rollouts_one_running ON rollouts (status) WHERE status = 'running'")


@migrations()
def m004_training(db: Database) -> None:
    # Retraining jobs (queued → running → succeeded | failed) with their stage, progress and outcome; the
    # partial unique index lets at most one job be queued or running, whichever process submits it.
    # (Named m004 but registered after m005_rollouts: migrations apply in registration order.)
    db.execute(
        """CREATE TABLE training_jobs (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
            stage TEXT NOT NULL,
            progress REAL NOT NULL,
            trigger TEXT NOT NULL,
            trigger_id TEXT,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            label_set_id TEXT,
            result_version TEXT,
            gate_verdict TEXT,
            error TEXT,
            drift_cursor INTEGER NOT NULL DEFAULT 0,
            created_ts REAL NOT NULL,
            started_ts REAL,
            finished_ts REAL,
            details TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX training_jobs_created ON training_jobs (created_ts)")
    db.execute(
        "CREATE UNIQUE INDEX training_jobs_one_active ON training_jobs ((1)) WHERE status IN ('queued', 'running')"
    )
    # The frozen evaluation slice: the first assignment of a labelled trace (eval or train) is kept forever.
    db.execute(
        """CREATE TABLE eval_slice (
            trace_id TEXT PRIMARY KEY,
            in_eval INTEGER NOT NULL,
            frozen_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX eval_slice_members ON eval_slice (in_eval, frozen_at)")


@migrations()
def m006_assign_counters(db: Database) -> None:
    # The counter of the last signed assignment per device: it only grows, so a device can refuse a replayed one.
    db.execute("CREATE TABLE assign_counters (device_id TEXT PRIMARY KEY, counter INTEGER NOT NULL)")


@migrations()
def m007_device_sequences(db: Database) -> None:
    # Per-device sequence numbers (shared.messages.Message.seq): the highest seen, and the holes below it. A
    # hole is reported as a `sequence_gap` once it outlives the grace period, and its seqs are asked for again.
    db.execute(
        """CREATE TABLE device_sequences (
            device_id TEXT PRIMARY KEY,
            high INTEGER NOT NULL,
            updated REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE sequence_holes (
            id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            lo INTEGER NOT NULL,
            hi INTEGER NOT NULL,
            detected REAL NOT NULL,
            reported REAL,
            requests INTEGER NOT NULL DEFAULT 0,
            last_request REAL,
            CHECK (lo <= hi)
        )"""
    )
    db.execute("CREATE INDEX sequence_holes_device ON sequence_holes (device_id, lo)")


@migrations()
def m008_drift_references(db: Database) -> None:
    # Drift references taken from the fleet's own stats: the newest row of a version is the one drift compares
    # with; older rows are its history. `counts` holds the fleet's, each device's and each cohort's histograms.
    db.execute(
        """CREATE TABLE drift_references (
            id INTEGER PRIMARY KEY,
            version TEXT NOT NULL,
            ts REAL NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            start REAL NOT NULL,
            "end" REAL NOT NULL,
            devices TEXT,
            device_baselines INTEGER NOT NULL,
            windows INTEGER NOT NULL,
            summary TEXT NOT NULL,
            counts TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX drift_references_version ON drift_references (version, id)")


@migrations()
def m009_incidents(db: Database) -> None:
    # Incidents: a device's alarm windows grouped (hub.incidents), their members, their history and the delivery
    # log of their notifications. A revision number guards every update (the grouping pass and a technician).
    db.execute(
        """CREATE TABLE incidents (
            id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            site TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('alarm', 'missed_failure')),
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'open', 'acknowledged', 'resolved', 'closed', 'dropped')),
            start_ts REAL NOT NULL,
            end_ts REAL NOT NULL,
            windows INTEGER NOT NULL,
            max_score REAL NOT NULL,
            model_version TEXT,
            created_ts REAL NOT NULL,
            updated_ts REAL NOT NULL,
            opened_ts REAL,
            acknowledged_by TEXT,
            acknowledged_ts REAL,
            resolved_by TEXT,
            resolved_ts REAL,
            verdict TEXT,
            fault_type TEXT,
            note TEXT,
            closed_ts REAL,
            revision INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX incidents_state ON incidents (state, device_id)")
    db.execute("CREATE INDEX incidents_device_start ON incidents (device_id, start_ts)")
    db.execute("CREATE INDEX incidents_start ON incidents (start_ts)")
    # An alarm window (anomaly trace) belongs to at most one incident.
    db.execute(
        """CREATE TABLE incident_windows (
            trace_id TEXT PRIMARY KEY,
            incident_id TEXT NOT NULL REFERENCES incidents (id),
            ts REAL NOT NULL,
            score REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX incident_windows_incident ON incident_windows (incident_id, ts)")
    db.execute(
        """CREATE TABLE incident_events (
            id TEXT PRIMARY KEY,
            incident_id TEXT NOT NULL REFERENCES incidents (id),
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            detail TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX incident_events_incident ON incident_events (incident_id, ts)")
    # The delivery log: one row per (event, target), its body frozen when the change was stored.
    db.execute(
        """CREATE TABLE incident_notifications (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL REFERENCES incident_events (id),
            incident_id TEXT NOT NULL,
            channel TEXT NOT NULL CHECK (channel IN ('webhook', 'mqtt')),
            target TEXT NOT NULL,
            site_key TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_ts REAL NOT NULL,
            next_attempt_ts REAL NOT NULL,
            last_attempt_ts REAL,
            last_status INTEGER,
            last_error TEXT,
            delivered_ts REAL,
            UNIQUE (event_id, channel, target)
        )"""
    )
    db.execute("CREATE INDEX incident_notifications_due ON incident_notifications (status, next_attempt_ts)")
    db.execute("CREATE INDEX incident_notifications_incident ON incident_notifications (incident_id, id)")
    # Where a periodic job is in an append-only table (the grouping pass: the last anomaly rowid it read).
    db.execute("CREATE TABLE job_cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")


@migrations()
def m010_leases(db: Database) -> None:
    # Named leases (hub.app.leader): the one hub process that runs the background jobs, until `expires`.
    db.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL)")


@migrations()
def m011_raw_windows(db: Database) -> None:
    # Raw sensor windows the hub asked devices for (hub.store.sqlite.windows): requested → stored | unavailable.
    # body: JSON {"sensors", "timestamps", "values"} of a stored window.
    db.execute(
        """CREATE TABLE raw_windows (
            trace_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('requested', 'stored', 'unavailable')),
            requested_ts REAL NOT NULL,
            asks INTEGER NOT NULL DEFAULT 0,
            asked_ts REAL,
            received_ts REAL,
            unit TEXT,
            body TEXT
        )"""
    )
    db.execute("CREATE INDEX raw_windows_due ON raw_windows (state, asked_ts)")
    db.execute("CREATE INDEX raw_windows_requested ON raw_windows (requested_ts)")


@migrations()
def m012_stats_rollup(db: Database) -> None:
    # Drift reads at fleet scale (hub.store.rollup): each stats row's counts as one integer blob with its layout
    # (rows stored before keep NULL there and are read from their JSON), and per-device hourly roll-ups of the
    # counts, summed as rows arrive; the roll-ups of the rows already stored are built here.
    db.execute("ALTER TABLE stats ADD COLUMN layout TEXT")
    db.execute("ALTER TABLE stats ADD COLUMN counts BLOB")
    db.execute(
        """CREATE TABLE stats_hourly (
            id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            model_version TEXT,
            layout TEXT NOT NULL,
            hour INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            windows INTEGER NOT NULL,
            anomalies INTEGER NOT NULL,
            counts BLOB NOT NULL
        )"""
    )
    db.execute("CREATE UNIQUE INDEX stats_hourly_key ON stats_hourly (device_id, model_version, layout, hour)")
    db.execute("CREATE INDEX stats_hourly_hour ON stats_hourly (hour)")
    old = db.execute("SELECT device_id, model_version, period_end, windows, anomalies, feature_hist, score_hist "
                     "FROM stats")
    db.conn.executemany(
        "INSERT INTO stats_hourly (device_id, model_version, layout, hour, rows, windows, anomalies, counts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(*key, d.rows, d.windows, d.anomalies, d.blob()) for key, d in json_row_deltas(old).items()])


@migrations()
def m013_cumulative_rollups(db: Database) -> None:
    # Roll-ups cumulative within their UTC day (hub.store.rollup): a window's sums are each day's latest roll-up
    # less the one before its start, ≤ 3 per device for a day's drift run. The hourly sums stored are made
    # running sums here; the index on (hour, key) finds each day's latest roll-up without reading them all.
    cumulative_rollups(db.conn)
    db.execute("DROP INDEX stats_hourly_hour")
    db.execute("CREATE INDEX stats_hourly_latest ON stats_hourly (hour, device_id, model_version, layout)")


def cumulative_rollups(conn: sqlite3.Connection) -> None:
    """The hourly sums stored made running sums within their day (m013)."""
    rows = conn.execute("SELECT id, device_id, model_version, layout, hour, rows, windows, anomalies, counts "
                        "FROM stats_hourly ORDER BY device_id, model_version, layout, hour").fetchall()
    conn.executemany("UPDATE stats_hourly SET rows = ?, windows = ?, anomalies = ?, counts = ? WHERE id = ?",
                     [(*r[1:], r[0]) for r in running_sums(rows)])

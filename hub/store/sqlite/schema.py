"""The hub database schema, as sqlite-utils migrations (append new ones; never edit an applied one)."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

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

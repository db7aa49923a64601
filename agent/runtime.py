"""The agent loop: readings → windows → features → ONNX → decision → SQLite + outbox → MQTT.

Single-threaded by design (one slow core): the loop owns the database; paho's network thread only
hands acks and inbound messages over through queues, and the model preparer (agent.models.prepare) hands
over verified, loaded models the same way; only the swap itself happens here, between two windows.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from agent.db import (
    PRIORITY_ANOMALY,
    PRIORITY_MODEL_EVENT,
    PRIORITY_SAMPLE,
    PRIORITY_STATS,
    AgentDB,
    OutboxMessage,
    PredictionValues,
    RawWindowRow,
)
from agent.dbfile import DatabaseCorruptError, StorageFullError, translate
from agent.exchange import Exchange
from agent.guard import ErrorTally
from agent.link import Link
from agent.memory import release_library_pages
from agent.models.fetch import ArtifactFetcher, UrlFetcher
from agent.models.health import HealthCriteria
from agent.models.manager import ModelEventKind, ModelManager
from agent.models.onnx import OnnxModel
from agent.models.prepare import Preparer
from agent.models.store import ModelStore
from agent.models.trial import TrialLimits
from agent.outbox import Forwarder
from agent.pipeline.regimes import RegimePipeline
from agent.pipeline.sampling import Sampler, SampleReason
from agent.pipeline.stats import StatsAccumulator
from agent.pipeline.windowing import Windower
from agent.settings import AgentSettings
from agent.sources.base import FLOAT32_MAX, Reading, ReadingBatch, SensorSource, reading_problem, unit_problem
from agent.storage import Storage
from shared.codec import encode
from shared.errors import ConfigError
from shared.features import REGIMES
from shared.ids import new_id
from shared.manifest import ModelManifest, same_inputs
from shared.messages import Anomaly, Message, ModelEvent, Sample
from shared.streaming import Emitted
from shared.topics import Kind, Topics

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 30.0
PUMP_EVERY_S = 0.05


def regime_pipeline(manifest: ModelManifest, source_sensors: Sequence[str]) -> RegimePipeline | None:
    """Feature set 2's reading transform and history for `manifest` (None for set 1)."""
    if manifest.window.feature_set_version != REGIMES:
        return None
    return RegimePipeline(manifest, source_sensors)


@dataclass
class Counters:
    readings: int = 0
    windows: int = 0
    anomalies: int = 0
    samples: int = 0
    inference_errors: int = 0
    nan_scores: int = 0
    commits: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Agent:
    """A running gateway agent. Build it with `Agent.from_settings` or inject parts for tests/benchmarks."""

    def __init__(
        self,
        settings: AgentSettings,
        source: SensorSource,
        db: AgentDB,
        store: ModelStore,
        link: Link | None,
        fetcher: ArtifactFetcher | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = settings.device_id
        self.source = source
        self.db = db
        self.store = store
        self.link = link
        self.topics = Topics(settings.prefix)
        self.forwarder = Forwarder.from_settings(db, link, settings) if link is not None else None
        self.counters = Counters()
        self.storage = Storage(db, int(settings.disk_reserve_mb * 1024 * 1024))
        self.errors = ErrorTally(log)
        self.sampler = Sampler(settings.sample_rate, settings.low_confidence_per_min,
                               f"{settings.device_id}:{settings.source.seed}")
        self._pending_rows: list[PredictionValues] = []
        # built (predictions) and encoded by `commit`, off the readings' path
        self._pending_msgs: list[tuple[Message, Kind, int] | partial[tuple[Message, Kind, int]]] = []
        self._pending_raw: list[RawWindowRow] = []
        self._raw_since_prune = 0
        self._pending_since = 0.0
        self._last_features: np.ndarray | None = None  # the last window scored: `commit` re-warms the model on it
        self._source_bad_rows = 0
        self._storage_dropped = 0  # storage.dropped already reported in stats
        self._logged_bad_rows = 0
        store.clean_staging()  # what a kill -9 left mid-download or mid-install
        self.model = self._initial_model()
        self._bind(self.model, time.time())
        self._release_due = math.inf
        self._arm_release()
        fetcher = fetcher or UrlFetcher(timeout_s=settings.fetch_timeout_s,
                                        max_bytes=int(settings.fetch_max_mb * 1024 * 1024))
        trial = (TrialLimits(settings.model_trial_memory_mb, settings.model_trial_timeout_s)
                 if settings.model_trial else None)
        self.models = ModelManager(
            self, store, Preparer(store, fetcher, trial),
            criteria=HealthCriteria(settings.health_windows, settings.health_latency_ms,
                                    settings.health_rss_growth_mb),
            shadow_report_s=settings.shadow_report_s, retry_s=settings.fetch_retry_s,
        )
        self.exchange = Exchange(self)

    # -- set-up ---------------------------------------------------------------------------------
    def _initial_model(self) -> OnnxModel:
        model = self.store.load_active()
        if model is None:
            if self.settings.initial_model is None:
                raise ConfigError(
                    "no active model: pass initial_model (a model version directory) or install one with "
                    "'fleetloop agent models install DIR'"
                )
            manifest = self.store.install(self.settings.initial_model)
            model = self.store.activate(manifest.version)
        for version, reason in self.store.refusals:
            self._model_event("refused", version, reason[:2000], model.version)
        self.store.refusals.clear()
        self._model_event("loaded", model.version, None, model.version)
        log.info("serving model %s (threshold %.3f)", model.version, model.threshold)
        return model

    def _model_event(self, event: ModelEventKind, version: str, detail: str | None, serving: str,
                     metrics: dict[str, float] | None = None) -> None:
        message = ModelEvent(device_id=self.device_id, ts=time.time(), model_version=serving, event=event,
                             version=version, detail=detail, metrics=metrics or {})
        self._enqueue_now(message, Kind.MODEL_EVENT, PRIORITY_MODEL_EVENT)

    def model_event(self, event: ModelEventKind, version: str, detail: str | None,
                    metrics: dict[str, float] | None = None) -> None:
        """Queue a model event (through the outbox) stamped with the serving version."""
        self._model_event(event, version, detail, self.model.version, metrics)

    def _bind(self, model: OnnxModel, now: float, *, keep_windows: bool = False) -> None:
        """Point windowing and stats at `model`'s window spec and reference bins.

        With `keep_windows` the windower (and the readings it buffers) stays: no window is lost.
        """
        if not keep_windows:
            self.regime_pipeline = regime_pipeline(model.manifest, self.source.sensors)
            sensors = self.source.sensors if self.regime_pipeline is None else self.regime_pipeline.sensors
            self.windower = Windower(model.manifest.window, sensors)
        self._sensor_names = json.dumps(list(model.manifest.window.sensors))
        self.stats = StatsAccumulator(model.manifest, self.device_id, now)
        self._last_features = None
        self._stats_due = now + self.settings.stats_interval_s

    def switch_model(self, model: OnnxModel) -> None:
        """Serve `model` from the next window on: stats of the old model are flushed first (loop thread only)."""
        now = time.time()
        self.flush_stats(now)
        self.commit()
        same_windows = same_inputs(model.manifest, self.model.manifest)
        if not same_windows:
            self.counters.extra["window_resets"] = self.counters.extra.get("window_resets", 0) + 1
            log.warning("model %s windows differently from %s: partial windows are dropped", model.version,
                        self.model.version)
        self.model = model
        self._bind(model, now, keep_windows=same_windows)
        self._announce()
        self._arm_release()

    def _arm_release(self) -> None:
        """Hand loading-only library pages back `release_pages_after_s` from now (see `agent.memory`)."""
        after = self.settings.release_pages_after_s
        self._release_due = time.time() + after if after is not None else math.inf

    def _release_pages(self) -> None:
        if self.models.health is not None:  # pages read back in would count against a swapped-in model's latency
            self._arm_release()
            return
        self._release_due = math.inf
        released = release_library_pages()
        if released is not None:
            (log.warning if released.kept_for_owner else log.info)("%s", released)

    def _announce(self) -> None:
        """Re-publish the retained status so the hub sees the serving/shadow version at once."""
        if self.link is not None and self.link.is_connected():
            try:
                self.link.publish_status("online")
            except Exception as exc:  # a status hiccup must not disturb a swap
                log.warning("could not publish status: %s", exc)

    def status_fields(self) -> dict[str, object]:
        from infra import __version__

        shadow = self.models.shadow
        return {
            "model_version": self.model.version,
            "shadow_version": shadow.version if shadow is not None else None,
            "agent_version": __version__,
            "site": self.settings.site,
            "asset_type": self.settings.asset_type,
        }

    # -- the hot path ---------------------------------------------------------------------------
    def process(self, reading: Reading) -> None:
        """Handle one reading: maybe a window, a prediction, an anomaly or a sample."""
        problem = reading_problem(reading)
        if problem is not None:
            self.counters.readings += 1
            self._skip_reading(problem)
            return
        self._process_one(float(reading.ts), np.asarray(reading.values, dtype=np.float64), reading.unit)

    def process_batch(self, batch: ReadingBatch) -> None:
        """Handle readings that arrived together, in order, as `process` would one by one: the windows they complete
        are scored in one onnxruntime call. During a model's health check, one reading at a time (a failed check
        swaps the model back between two windows), and under feature set 2 (its history features are
        those after each window's last reading)."""
        careful = self.models.health is not None or self.regime_pipeline is not None
        if len(batch) == 1 and not careful:
            self._process_single(batch)
            return
        if len(batch) == 1 or careful:
            units = batch.units
            for i, t in enumerate(batch.ts.tolist()):
                self.process(Reading(t, batch.values[i], units[i] if units is not None else None))
            return
        self._process_rows(batch)

    def _process_single(self, batch: ReadingBatch) -> None:
        """A batch of one reading (a live source's), feature set 1, no health check: `process`'s checks, the
        windower's and `WindowState.push_one`'s on one list of floats. A reading any of them would stop (a missing,
        non-finite or out-of-range value, a bad time or unit) goes the careful way, `process`, which says why."""
        ts, values = batch.ts.tolist()[0], batch.values[0]
        unit = batch.units[0] if batch.units is not None else None
        x = values.tolist()
        usable = math.isfinite(ts) and (unit is None or unit_problem(unit) is None)
        for v in x:
            if not abs(v) <= FLOAT32_MAX:  # NaN and inf fail this too
                usable = False
                break
        if not usable:
            self.process(Reading(ts, values, unit))
            return
        self.counters.readings += 1
        started = time.perf_counter()
        out = self.windower.push_checked(ts, values, x, unit)
        if out is not None:
            self._score([(0, unit, out, 0)], out.features, True, [ts], started)

    def _usable(self, batch: ReadingBatch) -> np.ndarray | None:
        """Indices of the rows that may enter a window (None: all); the others are skipped with their reason."""
        values = np.abs(batch.values)
        bad = ~np.isfinite(batch.ts) | ((values > FLOAT32_MAX) & (values < math.inf)).any(axis=1)
        if batch.units is not None:
            for unit in set(batch.units):
                if unit_problem(unit) is not None:
                    bad |= np.array([u == unit for u in batch.units])
        if not bad.any():
            return None
        for i in np.flatnonzero(bad).tolist():
            self._skip_reading(reading_problem(batch.reading(i)) or "unusable reading")
        return np.flatnonzero(~bad)

    def _windows(self, batch: ReadingBatch, rows: np.ndarray | None) -> list[tuple[int, str | None, Emitted, int]]:
        """The windows the usable rows complete, in reading order: (row, unit, its Emitted, index in it)."""
        ts, values, units = batch.ts, batch.values, batch.units
        if rows is not None:
            ts, values = ts[rows], values[rows]
            units = [units[i] for i in rows.tolist()] if units is not None else None
        if units is None or len(set(units)) == 1:
            unit = units[0] if units else None
            out = self.windower.push_many(ts, values, unit)
            ends = out.ends if rows is None else rows[out.ends]
            return [(row, unit, out, j) for j, row in enumerate(ends.tolist())]
        found: list[tuple[int, str | None, Emitted, int]] = []
        by_unit: dict[str | None, list[int]] = {}
        for i, unit in enumerate(units):
            by_unit.setdefault(unit, []).append(i)
        for unit, idx in sorted(by_unit.items(), key=lambda kv: kv[1][-1]):  # least recently seen first
            pick = np.asarray(idx, dtype=np.intp)
            out = self.windower.push_many(ts[pick], values[pick], unit)
            ends = pick[out.ends] if rows is None else rows[pick[out.ends]]
            found += [(row, unit, out, j) for j, row in enumerate(ends.tolist())]
        found.sort(key=lambda w: w[0])
        return found

    def _process_one(self, ts: float, values: np.ndarray, unit: str | None) -> None:
        """One usable reading (`reading_problem` passed): `_process_rows` of a batch of one without the batch
        machinery (no ReadingBatch, no masks: `Windower.push`)."""
        self.counters.readings += 1
        started = time.perf_counter()
        if self.regime_pipeline is not None:  # feature set 2: regime-normalised before windowing
            normalised = self.regime_pipeline.reading(ts, values, unit)
            if normalised is None:
                self.windower.bad_readings += 1
                return
            values = normalised
        out = self.windower.push(ts, values, unit)
        if out is None:
            return
        features = out.features
        if self.regime_pipeline is not None:  # its unit's history after its last reading appended
            features = self.regime_pipeline.features(features[0], unit).reshape(1, -1)
        self._score([(0, unit, out, 0)], features, True, [ts], started)

    def _process_rows(self, batch: ReadingBatch) -> None:
        """Readings of a batch (feature set 1, no health check): their windows are scored together."""
        self.counters.readings += len(batch)
        started = time.perf_counter()
        windows = self._windows(batch, self._usable(batch))
        if not windows:
            return
        one_unit = len({id(out) for _, _, out, _ in windows}) == 1  # one Emitted per unit
        if one_unit:
            features = windows[0][2].features  # all of its windows, in order
        else:
            features = np.concatenate([out.features[j : j + 1] for _, _, out, j in windows])
        self._score(windows, features, one_unit, batch.ts.tolist(), started)

    def _score(self, windows: list[tuple[int, str | None, Emitted, int]], features: np.ndarray, one_unit: bool,
               batch_ts: list[float], started: float) -> None:
        """Score the windows (row in the batch, unit, Emitted, index in it) with their features, then log, queue
        and count them; `started` is when their readings were taken up (`perf_counter`)."""
        # one window (a live source's): a float64 sum of float32 values cannot overflow, so it is finite iff they are
        if not (math.isfinite(sum(features[0].tolist())) if len(features) == 1 else np.isfinite(features).all()):
            # float32 overflow (a slope or spread of huge values): not scoreable
            finite_rows = np.isfinite(features).all(axis=1)
            for _ in range(len(finite_rows) - int(np.count_nonzero(finite_rows))):
                self._skip_reading("window features overflow float32")
            keep = np.flatnonzero(finite_rows)
            windows = [windows[i] for i in keep.tolist()]
            features = features[keep]
            if not windows:
                return
        models = self.models
        try:
            scores = self.model.score(features).tolist()
        except Exception as exc:  # onnxruntime errors are untyped; a bad batch must not stop the loop
            self.counters.inference_errors += len(windows)
            self.stats.inference_errors += len(windows)
            if self.counters.inference_errors <= 10 or self.counters.inference_errors % 1000 < len(windows):
                log.error("inference failed (%d so far): %s", self.counters.inference_errors, exc)
            if models.health is not None:
                models.after_window(error=True, finite=False, latency_s=time.perf_counter() - started)
            return
        latency_s = (time.perf_counter() - started) / len(windows)  # per window: the batch's share
        model = self.model
        version, threshold, margin = model.version, model.threshold, model.manifest.low_confidence_margin
        keep_raw = self.settings.raw_windows_keep > 0
        now = time.time()
        device_id, pending, reason_of, shadow = self.device_id, self._pending_rows, self.sampler.reason, models.shadow
        if one_unit and len(windows) == len(windows[0][2]):  # one unit, none dropped
            window_starts = windows[0][2].starts.tolist()
        else:
            window_starts = [float(out.starts[j]) for _, _, out, j in windows]
        self._last_features = features[-1:]
        # bytearray, 0 for a NULL text and NaN: values sqlite3 binds as they are (see agent.db.PredictionRow)
        blob, width = bytearray(features.tobytes()), features.shape[1] * features.itemsize
        finite_scores = []
        anomalies = 0
        checking = models.health is not None
        for i, (row, unit, out, j) in enumerate(windows):
            score = scores[i]
            finite = math.isfinite(score)
            anomaly = finite and score >= threshold
            trace_id = new_id()
            window_start, window_end = window_starts[i], batch_ts[row]
            shadow_version: str | int = 0
            shadow_score: float | None = math.nan
            if shadow is not None:
                shadow_version, shadow_score = models.score_shadow(features[i], score, anomaly)
            reason: SampleReason | None = reason_of(score, anomaly, threshold, margin) if finite else None
            reported = "anomaly" if anomaly else reason
            pending.append((
                trace_id, device_id, now, 0 if unit is None else unit, window_start, window_end, version,
                blob[i * width : (i + 1) * width], score if finite else math.nan, 1 if anomaly else 0, shadow_version,
                shadow_score, reported or 0,
            ))
            if keep_raw and (anomaly or reason == "random"):  # alarms and the unbiased slice: readings for the hub
                self._pending_raw.append(self._raw_row(trace_id, now, unit, out, j, anomaly))
            if finite:
                if reported is not None:
                    self._queue_prediction(trace_id, now, window_start, window_end, unit, score, anomaly,
                                           features[i], reason)
                finite_scores.append(i)
                anomalies += anomaly
            else:
                self.counters.nan_scores += 1
                self.stats.nan_scores += 1
            if checking:  # last: a failed check swaps the model back between two windows (one a batch here)
                self.counters.windows += 1
                if models.health is not None:
                    models.after_window(error=False, finite=finite, latency_s=latency_s)
        if not checking:
            self.counters.windows += len(windows)
        if not self._pending_since:
            self._pending_since = now
        if finite_scores:
            picked = features if len(finite_scores) == len(windows) else features[finite_scores]
            self.stats.add_many(picked, [scores[i] for i in finite_scores], anomalies, latency_s)

    def _raw_row(self, trace_id: str, now: float, unit: str | None, out: Emitted, j: int,
                 alarm: bool) -> RawWindowRow:
        """The readings of window `j` of `out` to keep for the hub: the window's (feature set 1), or under feature
        set 2 the readings as the source gave them (not normalised) with the context before the window and the
        count of readings before that (`RegimePipeline.raw_window`)."""
        if self.regime_pipeline is None:
            times, readings = out.window_bytes(j)
            return RawWindowRow(trace_id, now, unit, self._sensor_names, times, readings, alarm=alarm)
        raw = self.regime_pipeline.raw_window(unit)
        return RawWindowRow(trace_id, now, unit, self._sensor_names, raw.times.astype("<f8").tobytes(),
                            raw.readings.astype("<f8").tobytes(), alarm=alarm, service=raw.service)

    def _skip_reading(self, why: str) -> None:
        """Count a reading that cannot be scored (it shows in the stats' bad_readings); log the first few."""
        refused = self.counters.extra["refused_readings"] = self.counters.extra.get("refused_readings", 0) + 1
        self.stats.bad_readings += 1
        if refused <= 5 or refused % 1000 == 0:
            log.warning("skipped a reading (%d so far): %s", refused, why[:200])

    def _queue_prediction(
        self, trace_id: str, now: float, window_start: float, window_end: float, unit: str | None, score: float,
        anomaly: bool, features: np.ndarray, reason: SampleReason | None,
    ) -> None:
        """Count an anomaly or a sample and queue its message: `_prediction_message` builds it at the commit that
        keeps it with its prediction row (the same transaction), off the window's path."""
        if anomaly:
            self.counters.anomalies += 1
        else:
            self.counters.samples += 1
            self.stats.samples += 1
        model = self.model
        self._pending_msgs.append(partial(self._prediction_message, new_id(), trace_id, now, window_start, window_end,
                                          unit, score, anomaly, features, reason, model.version, model.threshold))

    def _prediction_message(
        self, msg_id: str, trace_id: str, now: float, window_start: float, window_end: float, unit: str | None,
        score: float, anomaly: bool, features: np.ndarray, reason: SampleReason | None, version: str, threshold: float,
    ) -> tuple[Message, Kind, int]:
        common = {
            "msg_id": msg_id, "device_id": self.device_id, "ts": now, "model_version": version, "trace_id": trace_id,
            "window_start": window_start, "window_end": window_end, "unit": unit, "score": score,
            "threshold": threshold, "decision": anomaly, "features": features.tolist(),
        }
        if anomaly:
            return Anomaly(sampled=reason == "random", **common), Kind.ANOMALY, PRIORITY_ANOMALY
        assert reason is not None
        return Sample(reason=reason, **common), Kind.SAMPLE, PRIORITY_SAMPLE

    def _outbox_rows(self) -> list[OutboxMessage]:
        """The pending messages, built and encoded; one the contract refuses (a score outside [0, 1]) is logged and
        counted, and its window's prediction row is kept."""
        rows = []
        for pending in self._pending_msgs:
            try:
                rows.append(self.outbox_message(*(pending if isinstance(pending, tuple) else pending())))
            except ValueError as exc:
                refused = self.counters.extra["refused_messages"] = self.counters.extra.get("refused_messages", 0) + 1
                if refused <= 5 or refused % 1000 == 0:
                    log.error("a message was refused by the wire contract (%d so far): %s", refused, exc)
        return rows

    def outbox_message(self, message: Message, kind: Kind, priority: int) -> OutboxMessage:
        return OutboxMessage(message.msg_id, self.topics.topic(self.device_id, kind), encode(message), priority)

    def _enqueue_now(self, message: Message, kind: Kind, priority: int) -> None:
        self.storage.write_batch((), [self.outbox_message(message, kind, priority)])

    def commit(self) -> None:
        """Write pending predictions and their outbox messages in one transaction (the messages are built and encoded
        here: a window's latency does not pay for them)."""
        if self._pending_rows or self._pending_msgs:
            self.storage.write_batch(self._pending_rows, self._outbox_rows(), self._pending_raw)
            self._raw_since_prune += len(self._pending_raw)
            self._pending_rows = []
            self._pending_msgs = []
            self._pending_raw = []
            # each ring (alarms, samples) holds at most raw_windows_keep × 1.25 windows between two prunes, even in an
            # alarm storm
            if self._raw_since_prune >= max(1, self.settings.raw_windows_keep // 4):
                self.db.prune_raw_windows(max(0, self.settings.raw_windows_keep))
                self._raw_since_prune = 0
            self.counters.commits += 1
            self.stats.fold_early()
            self._rewarm()
        self._pending_since = 0.0

    def _rewarm(self) -> None:
        """Score the last window again, result unused: a transaction pushes the model's tables out of the CPU
        caches, and the next window paid for reading them back (onnxruntime 8 -> 42 us)."""
        if self._last_features is not None:
            try:
                self.model.rewarm(self._last_features)
            except Exception:  # onnxruntime errors are untyped; a warm-up never matters
                self._last_features = None

    # -- housekeeping ---------------------------------------------------------------------------
    def flush_stats(self, now: float) -> None:
        bad_rows = self.source.bad_rows
        self.stats.bad_rows += bad_rows - self._source_bad_rows
        self._source_bad_rows = bad_rows
        bad_readings = self.windower.bad_readings
        self.windower.bad_readings = 0
        self.stats.bad_readings += bad_readings
        self.stats.storage_dropped += self.storage.dropped - self._storage_dropped  # disk full: rows given up
        self._storage_dropped = self.storage.dropped
        if bad_readings or bad_rows > self._logged_bad_rows:
            log.warning("skipped %d readings with missing, NaN, inf or out-of-range values or bad unit names and %d "
                        "malformed source rows so far this period", self.stats.bad_readings, self.stats.bad_rows)
            self._logged_bad_rows = bad_rows
        self._pending_msgs.append((self.stats.flush(now, self.model.version), Kind.STATS, PRIORITY_STATS))
        self._stats_due = now + self.settings.stats_interval_s

    def run(self, stop: threading.Event | None = None, *, max_windows: int | None = None,
            duration_s: float | None = None, drain_s: float = 5.0) -> Counters:
        """Run until `stop` is set, the source ends, `max_windows` or `duration_s`; then drain the outbox."""
        stop = stop or threading.Event()
        settings = self.settings
        deadline = time.time() + duration_s if duration_s else math.inf
        next_pump = next_retention = 0.0
        if self.link is not None:
            self.link.start()
        broken = False
        try:
            while not stop.is_set():
                reading = None
                try:
                    reading = self._read(0.0 if self._pending_rows else PUMP_EVERY_S,
                                         max_windows - self.counters.windows if max_windows is not None else None)
                    if reading is not None:
                        self._process_guarded(reading)
                    now = time.time()
                    if self._pending_since and (
                        reading is None
                        or len(self._pending_rows) >= settings.commit_every
                        or now - self._pending_since >= settings.commit_interval_s
                    ):
                        self.commit()
                    if now >= self._stats_due:
                        self.flush_stats(now)
                        self.commit()
                    if self.forwarder is not None and (reading is None or now >= next_pump):
                        self.exchange.receive()
                        self.models.poll(now)
                        self.forwarder.pump(now)
                        next_pump = now + PUMP_EVERY_S
                    if now >= next_retention:
                        self.db.enforce_retention(settings.retention_rows, int(settings.retention_mb * 1024 * 1024))
                        self.db.prune_raw_windows(max(0, settings.raw_windows_keep))
                        if self.forwarder is not None:
                            self.forwarder.trim()
                        next_retention = now + RETENTION_EVERY_S
                    self.storage.tick(now)
                    if now >= self._release_due:
                        self._release_pages()
                except Exception as exc:  # the last resort: count, log once per kind, go on (see _step_failed)
                    self._step_failed(exc)
                    stop.wait(PUMP_EVERY_S)  # no hot spin on a step that keeps failing
                    now = time.time()
                if (max_windows is not None and self.counters.windows >= max_windows) or now >= deadline:
                    break
                if reading is None and self.source.exhausted:
                    log.info("source exhausted after %d readings", self.counters.readings)
                    break
        except DatabaseCorruptError:
            broken = True  # a damaged database: stop with one line, write nothing more
            raise
        finally:
            self.models.stop()
            if not broken:
                try:
                    self.flush_stats(time.time())
                    self.commit()
                    self.exchange.drain(drain_s)
                except Exception as exc:
                    log.error("could not flush and drain on stop: %s", exc)
            if self.link is not None:
                self.link.stop()
        return self.counters

    def upload_traces(self, trace_ids: list[str]) -> int:
        """Queue the logged predictions with these trace ids for the hub (see `Exchange.upload_traces`)."""
        return self.exchange.upload_traces(trace_ids)

    def _read(self, timeout: float, windows_left: int | None = None) -> Reading | ReadingBatch | None:
        """The readings ready now: the first waits up to `timeout`; at most as many as keep a transaction within
        `commit_every` windows (and within `windows_left`: a reading completes one window at most). A source with
        ``read_many`` hands them over in bulk, others one by one (a lone reading as it is: a live source's)."""
        limit = max(1, min(self.settings.commit_every - len(self._pending_rows),
                           windows_left if windows_left is not None else sys.maxsize))
        read_many = getattr(self.source, "read_many", None)
        if read_many is not None:
            batch: ReadingBatch | None = read_many(limit, timeout)
            return batch
        first = self.source.read(timeout)
        if first is None:
            return None
        readings = [first]
        while len(readings) < limit and (more := self.source.read(0.0)) is not None:
            readings.append(more)
        if len(readings) == 1:
            return first  # `process` checks it
        try:
            if not any(reading_problem(r) for r in readings):
                return ReadingBatch.of(readings)
        except ValueError:  # ragged values: a source bug, for `process` to meet reading by reading
            pass
        for r in readings:  # an unusable reading: each on its own, in order, with its reason
            self._process_guarded(r)
        return ReadingBatch(np.empty(0), np.empty((0, len(self.source.sensors))))

    def _process_guarded(self, reading: Reading | ReadingBatch) -> None:
        """`process`, but an exception from a reading is counted (stats bad_readings) and logged, not fatal."""
        try:
            if isinstance(reading, ReadingBatch):
                if len(reading):
                    self.process_batch(reading)
            else:
                self.process(reading)
        except Exception as exc:
            self.counters.extra["reading_errors"] = self.counters.extra.get("reading_errors", 0) + 1
            self.stats.bad_readings += 1
            self.errors.record("processing a reading", exc)

    def _step_failed(self, exc: Exception) -> None:
        """A loop step raised: a full disk degrades, a damaged database stops the agent, anything else is counted."""
        error: Exception = exc
        if isinstance(exc, sqlite3.Error):
            error = translate(self.db.path, exc) or exc
        if isinstance(error, StorageFullError):
            self.storage.on_full(error)
            return
        if isinstance(error, DatabaseCorruptError):
            if error is exc:
                raise error
            raise error from exc
        self.counters.extra["loop_errors"] = self.counters.extra.get("loop_errors", 0) + 1
        self.errors.record("an agent loop step", exc)

"""`TrafficYardstick`: the candidate scored at the hub (onnxruntime) on the stage's traffic (`hub.rollout.traffic`).

The traffic is what the hub received since the stage began (hub clock, as the stage's stats: in the evaluation's
lockstep replay that is the data since the milestone the stage began at), of the stage's own devices, else of the
whole fleet when they sent too few random vectors, else nothing (the plan's reference stays the yardstick). Only
vectors of versions whose features are the candidate's count (`same_features`).

The same read and scores give the candidate's label-free `Estimate` there (`estimate_on_traffic`, with the calibration
of its manifest), beside its gate-time recall and false-alarm rate (`gate_time_figures`): `measure` returns both.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import onnxruntime as ort

from hub.registry.service import Registry
from hub.rollout.evidence import Estimate, Expectation, Source
from hub.rollout.plan import RolloutPlan
from hub.rollout.state import RolloutState
from hub.rollout.traffic import Provenance, Served, estimate_on_traffic, expected_on_traffic, same_features
from hub.store import HubStore
from hub.store.rows import PredictionRow
from hub.training.performance import gate_time_figures
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.errors import FleetloopError
from shared.manifest import ModelManifest

log = logging.getLogger(__name__)

MAX_VECTORS = 5_000
"""Of each stratum (alarms, random slice) at most this many of the newest vectors are read and scored per judgement
(every `rollout_tick_s`, while the control is not trusted or the candidate has a calibration): a rate from 5,000
random vectors is within ±0.01."""


class TrafficYardstick:
    """The candidate's `Expectation` on the stage's traffic; models and sessions are cached by version."""

    def __init__(self, store: HubStore, registry: Registry, *, clock_skew_s: float,
                 max_vectors: int = MAX_VECTORS) -> None:
        self.store, self.registry = store, registry
        self.clock_skew_s, self.max_vectors = clock_skew_s, max_vectors
        self._manifests: dict[str, ModelManifest | None] = {}
        self._sessions: dict[str, tuple[ModelManifest, ort.InferenceSession]] = {}

    def measure(self, plan: RolloutPlan, state: RolloutState, now: float, *, expect: bool = True,
                ) -> tuple[Expectation | None, Estimate]:
        """The candidate's `expectation` (when `expect`) and its label-free `Estimate` from one read and scoring of
        the stage's traffic (else the fleet's: the first holding `min_traffic_samples` random vectors). Nothing is
        read when no expectation is asked for and the candidate has no calibration to estimate with."""
        try:
            candidate, session = self._session(plan.candidate)
        except (FleetloopError, OSError, ValueError) as exc:
            log.warning("cannot score %s on the stage's traffic: %s", plan.candidate, exc)
            return None, Estimate("unscored", f"cannot score the candidate at the hub: {exc}")
        calibration = candidate.calibration
        if calibration is None and not expect:
            return None, Estimate("no_calibration", "the candidate's manifest has no calibration")
        stage = plan.stage(state.stage)
        scopes: list[tuple[Source, Sequence[str]]] = [("stage", stage.devices)]
        if set(stage.devices) != set(plan.fleet):
            scopes.append(("fleet", plan.fleet))
        minimum = plan.limits.min_traffic_samples
        estimate = Estimate("too_few_samples", "no vector of the candidate's features from the stage's traffic")
        for source, devices in scopes:
            read = self._on(source, devices, candidate, session, state.entered_at, now)
            if read is None:
                continue
            served, provenance = read
            expectation = None if not expect else expected_on_traffic(
                served, candidate.reference.score_bin_edges, candidate.threshold, provenance, min_samples=minimum)
            estimate = estimate_on_traffic(served, calibration, candidate.threshold, source, min_samples=minimum)
            if expectation is not None if expect else estimate.status != "too_few_samples":
                return expectation, self._gated(plan.candidate, estimate)
            log.debug("%s traffic of %s: too few vectors to judge %s on", source, ", ".join(sorted(devices)),
                      candidate.version)
        return None, self._gated(plan.candidate, estimate)

    def _gated(self, version: str, estimate: Estimate) -> Estimate:
        """`estimate` with the candidate's gate-time recall and false-alarm rate beside it."""
        row = self.store.model_version(version)
        if row is None or not estimate.ok:
            return estimate
        recall, far = gate_time_figures(row)
        return replace(estimate, gate_recall=recall, gate_false_alarm_rate=far)

    def _on(self, source: Source, devices: Sequence[str], candidate: ModelManifest, session: ort.InferenceSession,
            since: float, now: float) -> tuple[list[Served], Provenance] | None:
        """The served versions' traffic of `devices` since `since`, with the candidate's scores on its vectors; None
        when the hub holds no vector of the candidate's features."""
        ids = sorted(devices)
        alarm_rows = self.store.received_predictions(received_since=since, ts_since=since - self.clock_skew_s,
                                                     kind="anomaly", device_ids=ids, limit=self.max_vectors)
        quiet_rows = self.store.received_predictions(received_since=since, ts_since=since - self.clock_skew_s,
                                                     kind="sample", reason="random", device_ids=ids,
                                                     limit=self.max_vectors)
        stats = self.store.stage_stats(period_end_since=since - self.clock_skew_s, received_since=since,
                                       device_ids=ids)
        width = len(candidate.feature_names)
        fits: dict[str | None, bool] = {}

        def fit(version: str | None) -> bool:
            if version not in fits:
                manifest = None if version is None else self._manifest(version)
                fits[version] = manifest is not None and same_features(manifest, candidate)
            return fits[version]

        def usable(rows: list[PredictionRow]) -> list[PredictionRow]:
            return [r for r in rows if fit(r.model_version) and len(r.features) == width]

        alarms, quiet = usable(alarm_rows), usable(quiet_rows)
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for s in stats:
            if s.model_version is not None and fit(s.model_version):
                counts[s.model_version][0] += s.windows
                counts[s.model_version][1] += s.anomalies
        rows = alarms + quiet
        if not rows:
            return None
        scores = onnx_scores(session, np.array([r.features for r in rows], dtype=np.float32))
        alarm_scores, quiet_scores = scores[: len(alarms)], scores[len(alarms):]
        served = []
        for version, (windows, anomalies) in sorted(counts.items()):
            a = np.array([r.model_version == version for r in alarms], dtype=bool)
            q = np.array([r.model_version == version for r in quiet], dtype=bool)
            served.append(Served(version, windows, anomalies, alarm_scores[a] if a.size else np.empty(0),
                                 quiet_scores[q] if q.size else np.empty(0),
                                 sum(r.reason == "random" for r in alarms if r.model_version == version)))
        starts = [r.window_start for r in rows if math.isfinite(r.window_start)]
        ends = [r.window_end for r in rows if math.isfinite(r.window_end)]
        provenance = Provenance(source, tuple(sorted({r.device_id for r in rows})), since, now,
                                min(starts) if starts else None, max(ends) if ends else None)
        return served, provenance

    def _manifest(self, version: str) -> ModelManifest | None:
        if version not in self._manifests:
            self._manifests[version] = self.registry.manifest(version)
        return self._manifests[version]

    def _session(self, version: str) -> tuple[ModelManifest, ort.InferenceSession]:
        if version not in self._sessions:
            if len(self._sessions) >= 4:  # one rollout runs at a time: older candidates are not scored again
                self._sessions.clear()
            manifest, onnx_bytes = read_version(self.registry.path(version))  # verifies the sha256
            self._sessions[version] = (manifest, onnx_session(onnx_bytes))
        return self._sessions[version]


__all__ = ["MAX_VECTORS", "TrafficYardstick"]

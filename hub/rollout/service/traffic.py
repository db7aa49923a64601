"""`TrafficYardstick`: the candidate scored at the hub (onnxruntime) on the stage's traffic (`hub.rollout.traffic`).

The traffic is what the hub received since the stage began (hub clock, as the stage's stats: in the evaluation's
lockstep replay that is the data since the milestone the stage began at), of the stage's own devices, else of the
whole fleet when they sent too few random vectors, else nothing (the plan's reference stays the yardstick). Only
vectors of versions whose features are the candidate's count (`same_features`).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from hub.registry.service import Registry
from hub.rollout.evidence import Expectation, Source
from hub.rollout.plan import RolloutPlan
from hub.rollout.state import RolloutState
from hub.rollout.traffic import Provenance, Served, expected_on_traffic, same_features
from hub.store import HubStore
from hub.store.rows import PredictionRow
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.errors import FleetloopError
from shared.manifest import ModelManifest

log = logging.getLogger(__name__)

MAX_VECTORS = 5_000
"""Of each stratum (alarms, random slice) at most this many of the newest vectors are read and scored per judgement
(every `rollout_tick_s`, only while the control is not trusted): a rate from 5,000 random vectors is within ±0.01."""


class TrafficYardstick:
    """The candidate's `Expectation` on the stage's traffic; models and sessions are cached by version."""

    def __init__(self, store: HubStore, registry: Registry, *, clock_skew_s: float,
                 max_vectors: int = MAX_VECTORS) -> None:
        self.store, self.registry = store, registry
        self.clock_skew_s, self.max_vectors = clock_skew_s, max_vectors
        self._manifests: dict[str, ModelManifest | None] = {}
        self._sessions: dict[str, tuple[ModelManifest, ort.InferenceSession]] = {}

    def expectation(self, plan: RolloutPlan, state: RolloutState, now: float) -> Expectation | None:
        """On the stage devices' traffic, else the fleet's; None when neither holds `min_traffic_samples` random
        vectors of the candidate's features (or the candidate's artifact cannot be read)."""
        try:
            candidate, session = self._session(plan.candidate)
        except (FleetloopError, OSError, ValueError) as exc:
            log.warning("cannot score %s on the stage's traffic: %s", plan.candidate, exc)
            return None
        stage = plan.stage(state.stage)
        scopes: list[tuple[Source, Sequence[str]]] = [("stage", stage.devices)]
        if set(stage.devices) != set(plan.fleet):
            scopes.append(("fleet", plan.fleet))
        for source, devices in scopes:
            expect = self._on(source, devices, candidate, session, state.entered_at, now,
                              plan.limits.min_traffic_samples)
            if expect is not None:
                return expect
        return None

    def _on(self, source: Source, devices: Sequence[str], candidate: ModelManifest, session: ort.InferenceSession,
            since: float, now: float, min_samples: int) -> Expectation | None:
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
        expect = expected_on_traffic(served, candidate.reference.score_bin_edges, candidate.threshold, provenance,
                                     min_samples=min_samples)
        if expect is None:
            log.debug("%s traffic of %s: too few vectors (%d alarms, %d random) to judge %s on", source,
                      ", ".join(ids), len(alarms), len(quiet), candidate.version)
        return expect

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

"""Simulated technicians for a C-MAPSS replay: confirm each feedback engine's failure and label its windows.

An engine of a training file fails at its last cycle. Once a gateway's replay is `delay` cycles past that
(its own clock: readings replayed, read from the agent's prediction log), the technician at that gateway
reads the engine's logged predictions, labels a share of them — ``fault``
when the window ends within `horizon` cycles of the failure, else ``no_fault`` — and records each label with
``fleetloop agent annotate``'s code path (`agent.app.record_annotation`): stored in the agent's database and
queued in its outbox, which the running agent publishes to the hub over MQTT. The hub joins each label to its
trace, asking the gateway to upload the traces it has not seen. Evaluation engines are never labelled.

Which windows: with the ``select`` policy, those the hub's label-selection policy (`hub.labels.selection`) ranks
first among the engine's windows (a seeded random slice, then by operating regime in turn, shadow disagreement and
closeness to the threshold of the model that scored each window); with ``even``, an evenly spaced share
(`plan.labelled`). Either way the same number of windows per engine.

The agent's own process keeps writing the same SQLite file (WAL): reads here are read-only connections, and
the annotation writes are short transactions, as when a technician runs the CLI next to a running agent.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.app import record_annotation
from agent.db import AgentDB
from fleetloop.evaluation.plan import FleetPlan, Gateway, ReplayClock, label_offset, labelled
from fleetloop.evaluation.settings import LabelPolicy
from hub.labels.selection import Candidate, budget_for, select
from shared.messages import Annotation
from shared.topics import Topics

log = logging.getLogger(__name__)

FAULT_TYPE = "hpc_degradation"  # FD001/FD002's one fault mode


@dataclass
class Progress:
    """Where one gateway's replay is: readings replayed (its cycle clock) and the predictions it logged."""

    position: int = 0
    predictions: int = 0


@dataclass
class Desk:
    """The technicians of a fleet; `run(now)` is one pass (call it periodically from one thread)."""

    plan: FleetPlan
    agents_dir: Path  # <agents_dir>/<device>/agent.db
    topics: Topics
    horizon: int
    share: float
    delay: int
    seed: int
    clock: ReplayClock | None = None  # the gateways' data clock; None: a window's end is its engine's cycle
    policy: LabelPolicy = "even"
    threshold_of: Callable[[str], float] | None = None  # a model version's threshold (for `select`)
    regimes: dict[int, list[str]] = field(default_factory=dict)  # unit -> operating regime of each cycle (1-based)
    failures: set[int] = field(default_factory=set)  # engines with at least one ``fault`` label sent
    random_labels: int = 0  # labels the policy drew at random (the unbiased slice)
    labelled_engines: set[int] = field(default_factory=set)
    progress: dict[str, Progress] = field(default_factory=dict)
    sent: int = 0
    faults: int = 0
    _dbs: dict[str, AgentDB] = field(default_factory=dict)

    def run(self, now: float) -> int:
        """Label every feedback engine whose failure is `delay` cycles behind its gateway; returns labels sent."""
        sent = 0
        for gateway in self.plan.gateways:
            progress = self.read_progress(gateway)
            if progress is None:
                continue
            offsets = gateway.offsets()
            for engine in gateway.engines:
                if not engine.feedback or engine.unit in self.labelled_engines:
                    continue
                if progress.position >= offsets[engine.unit] + engine.cycles + self.delay:
                    sent += self._label(gateway, engine.unit, engine.cycles, now)
                    self.labelled_engines.add(engine.unit)
        self.sent += sent
        return sent

    def read_progress(self, gateway: Gateway) -> Progress | None:
        """The gateway's replay position from its newest logged prediction; None before its first."""
        try:
            rows = self._query(gateway.device_id, "SELECT unit, window_end, (SELECT count(*) FROM predictions) "
                               "FROM predictions ORDER BY id DESC LIMIT 1")
        except sqlite3.OperationalError as exc:  # no file or no table yet: the agent is still starting
            if "unable to open" in str(exc) or "no such table" in str(exc):
                return None
            raise
        if not rows:
            return None
        unit, window_end, count = rows[0]
        progress = Progress(self._position(gateway, int(unit), float(window_end)), int(count))
        self.progress[gateway.device_id] = progress
        return progress

    def _label(self, gateway: Gateway, unit: int, cycles: int, now: float) -> int:
        rows = self._query(gateway.device_id, "SELECT trace_id, window_end, score, shadow_score, model_version, "
                           "shadow_version FROM predictions WHERE unit = ? ORDER BY window_end, id", str(unit))
        offset = gateway.offsets()[unit]
        cycles_of = [self._position(gateway, unit, float(r[1])) - offset for r in rows]
        chosen = self._choose(gateway, unit, rows, cycles_of)
        db = self._db(gateway.device_id)
        technician = f"tech-{gateway.device_id}"
        for i in chosen:
            trace_id = rows[i][0]
            cycle = cycles_of[i]
            fault = cycles - cycle <= self.horizon
            annotation = Annotation(
                device_id=gateway.device_id, ts=time.time(), trace_id=trace_id, label="fault" if fault else "no_fault",
                fault_type=FAULT_TYPE if fault else None, technician_id=technician, signal="confirmed",
                note=f"engine {unit} failed after cycle {cycles}; window ends at cycle {cycle}",
            )
            record_annotation(db, self.topics, annotation)
            self.faults += fault
            if fault:
                self.failures.add(unit)
        log.debug("%s: engine %d failed at cycle %d; %d of its %d windows labelled", gateway.device_id, unit,
                  cycles, len(chosen), len(rows))
        return len(chosen)

    def _choose(self, gateway: Gateway, unit: int, rows: list[tuple[Any, ...]], cycles_of: list[int]) -> list[int]:
        """Indices (into `rows`) of the windows to label, as the policy picks them."""
        if self.policy == "even":
            return [int(i) for i in labelled(len(rows), self.share, label_offset(self.seed, unit))]
        regimes = self.regimes.get(unit, [])
        threshold = self.threshold_of or (lambda version: 0.5)
        candidates = [
            Candidate(str(i), score=_finite(score), threshold=threshold(version), device=gateway.device_id,
                      ts=float(end), cohort=regimes[cycle - 1] if 0 < cycle <= len(regimes) else None,
                      shadow_score=None if shadow is None else float(shadow),
                      shadow_threshold=threshold(shadow_version) if shadow_version else None)
            for i, ((_, end, score, shadow, version, shadow_version), cycle) in enumerate(zip(rows, cycles_of,
                                                                                              strict=True))
        ]
        picks = select(candidates, budget_for(self.share, len(rows)), seed=f"{self.seed}:{unit}")
        self.random_labels += sum(p.reason == "random" for p in picks)
        return sorted(int(p.candidate.key) for p in picks)

    def _position(self, gateway: Gateway, unit: int, window_end: float) -> int:
        """Readings the gateway had replayed when it logged the window ending at `window_end`."""
        if self.clock is not None:
            return self.clock.position(window_end)
        return gateway.offsets()[unit] + int(window_end)

    def _db(self, device_id: str) -> AgentDB:
        db = self._dbs.get(device_id)
        if db is None:
            db = self._dbs[device_id] = AgentDB(self.agents_dir / device_id / "agent.db")
        return db

    def _query(self, device_id: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
        path = self.agents_dir / device_id / "agent.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()


def _finite(score: object) -> float:
    return float(score) if isinstance(score, (int, float)) else float("nan")

"""The evaluation's conductor: steps the fleet's replay in lockstep on the data clock, so that a run's outcome
depends on its seed and not on how fast the machine happened to be.

Every gateway's replay is held (the agent source's ``hold_path``) at milestones `step` readings apart. At each
milestone, once every gateway has logged its windows up to it and the hub has stored everything they sent:

1. the technicians label the engines that failed `delay` cycles before it (`technicians.Desk`), and the conductor
   waits until the hub has them all, and every trace they name;
2. the hub's retrain triggers are checked (``training.check``; the hub's periodic job is off), no sooner than
   `cooldown` readings after the last retrain fired, and a retrain that fires is waited for: its label set is
   exactly the labels sent up to this milestone, and its gate has judged it before the replay goes on;
3. the operator acts (`operator.Operator`), the rollouts are judged on the evidence up to the milestone
   (``rollouts.tick``; the periodic job is off), and the conductor waits until every gateway serves what it is
   assigned;

then it releases the next `step` readings. The product's wall-clock waits have data-time stand-ins here: the
trigger cooldown is `cooldown` readings, and a rollout stage advances on its windows (its `min_duration_s` is 0).
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from fleetloop.evaluation.operator import Operator
from fleetloop.evaluation.plan import FleetPlan, last_window_end
from fleetloop.evaluation.technicians import Desk
from hub.app.service import HubService
from shared.errors import FleetloopError
from shared.features import WindowSpec

log = logging.getLogger(__name__)

DRIVEN_JOBS = ("retrain-triggers", "rollouts")
"""The hub's periodic jobs the conductor runs itself, at milestones."""

POLL_S = 0.05
SETTLE_TIMEOUT_S = 30.0  # a wait for the hub that takes longer is logged and given up (the run goes on)
JOIN_PATIENCE_S = 5.0  # a trace a label names that has not come by then joins later (seen: 1 in ~400 labels)


class Conductor:
    """Releases the replay milestone by milestone (`run`), acting at each (see the module docstring)."""

    def __init__(self, hub: HubService, plan: FleetPlan, desk: Desk, operator: Operator, procs: Mapping[str,
                 subprocess.Popen[bytes]], agents_dir: Path, window: WindowSpec, *, step: int, cooldown: int,
                 stats_s: float, train_timeout_s: float) -> None:
        self.hub, self.plan, self.desk, self.operator, self.procs = hub, plan, desk, operator, procs
        self.agents_dir, self.window, self.step, self.cooldown = agents_dir, window, step, cooldown
        self.stats_s, self.train_timeout_s = stats_s, train_timeout_s
        self.limit = 0
        self.next_check = 0
        self.milestones = 0
        self.unchecked = False  # labels arrived since the last trigger check
        self.stuck: set[str] = set()  # traces named by labels that did not come in JOIN_PATIENCE_S
        self.waited_s = 0.0  # wall time the replay spent held at milestones

    def hold_path(self, device_id: str) -> Path:
        return self.agents_dir / device_id / "hold"

    def release(self, limit: int) -> None:
        """Let every gateway replay up to reading `limit` (atomically: an agent never reads half a number)."""
        self.limit = limit
        for gateway in self.plan.gateways:
            path = self.hold_path(gateway.device_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(limit), encoding="utf-8")
            tmp.replace(path)

    def done(self) -> bool:
        return all(p.poll() is not None for p in self.procs.values())

    def run(self, deadline: float, on_wait: Callable[[], None] = lambda: None) -> None:
        """Step until every gateway has replayed its engines (FleetloopError past `deadline`, monotonic)."""
        self.release(self.step)
        while not self.done():
            self._until(self._reached, deadline, on_wait, "gateways to reach the milestone", hard=True)
            started = time.monotonic()
            self.milestone(deadline)
            self.waited_s += time.monotonic() - started
            self.milestones += 1
            self.release(self.limit + self.step)

    def milestone(self, deadline: float) -> None:
        self._settle(deadline)
        labelled = self.desk.run(time.time())
        if labelled:  # the labels reach the hub, which asks for the traces they name and gets them
            self._settle(deadline)
            self._until(lambda: self._missing() <= self.stuck, deadline, None, "the traces the labels name",
                        patience=JOIN_PATIENCE_S)
            self.stuck |= self._missing()
            self.unchecked = True
        position = min((p.position for p in self.desk.progress.values()), default=0)
        if self.unchecked and position >= self.next_check:  # no new label: no retrain could fire
            self.unchecked = False
            job_id = self.hub.training.check(time.time())
            if job_id is not None:
                self.next_check = position + self.cooldown
                job = self.hub.training.wait(job_id, timeout=self.train_timeout_s)
                log.info("milestone %d: retrain %s %s (%s)", self.limit, job.result_version or job_id, job.status,
                         job.gate_verdict or "-")
        self.operator.run(time.time())
        self.hub.rollouts.tick(time.time())
        self._until(self._assigned, deadline, None, "every gateway to serve its assignment")

    def _missing(self) -> set[str]:
        return {m.trace_id for m in self.hub.store.missing_traces(since=0.0)}

    def _settle(self, deadline: float) -> None:
        """Until the gateways' last stats are out and the hub has acknowledged everything they sent by then."""
        time.sleep(2 * self.stats_s)
        marks = self._marks()
        self._until(lambda: self._flushed(marks), deadline, None, "the hub to store what the gateways sent")

    def _reached(self) -> bool:
        for gateway in self.plan.gateways:
            if self.procs[gateway.device_id].poll() is not None:
                continue
            want = last_window_end(gateway, min(self.limit, gateway.cycles), self.window)
            progress = self.desk.read_progress(gateway)
            if want and (progress is None or progress.position < want):
                return False
        return True

    def _marks(self) -> dict[str, int]:
        """The newest outbox row of every running gateway (-1: none or no database yet)."""
        marks = {}
        for device_id, proc in self.procs.items():
            if proc.poll() is None:
                rows = self._outbox(device_id, "SELECT max(id) FROM outbox")
                marks[device_id] = -1 if not rows or rows[0][0] is None else int(rows[0][0])
        return marks

    def _flushed(self, marks: Mapping[str, int]) -> bool:
        """The hub stored (and acknowledged) every sequenced row that was in the gateways' outboxes at `marks`;
        rows queued since (stats of held, idle gateways) may still be on their way, and delivered rows without a
        sequence number (traces uploaded on request) are not acknowledged by sequence."""
        for device_id, mark in marks.items():
            if self.procs[device_id].poll() is not None or mark < 0:
                continue
            rows = self._outbox(device_id, "SELECT count(*) FROM outbox WHERE id <= ? "
                                "AND (seq IS NOT NULL OR delivered IS NULL)", mark)
            if rows is None or rows[0][0]:
                return False
        return True

    def _outbox(self, device_id: str, sql: str, *params: object) -> list[tuple[int | None]] | None:
        path = self.agents_dir / device_id / "agent.db"
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return None

    def _assigned(self) -> bool:
        """Every running gateway reports serving (or shadowing) what the hub assigns it."""
        rollout = self.hub.rollouts.running()
        active = self.hub.registry.active_version()
        want: dict[str, tuple[str | None, str]] = {}
        if rollout is not None and rollout.state.stage is not None:
            stage = rollout.plan.stage(rollout.state.stage)
            want = {d: (rollout.plan.candidate, stage.mode) for d in stage.devices}
            active = rollout.plan.incumbent
        for device in self.hub.store.devices():
            proc = self.procs.get(device.device_id)
            if proc is None or proc.poll() is not None:
                continue
            version, mode = want.get(device.device_id, (active, "active"))
            if (device.shadow_version if mode == "shadow" else device.model_version) != version:
                return False
        return True

    def _until(self, ready: Callable[[], bool], deadline: float, on_wait: Callable[[], None] | None, what: str,
               *, hard: bool = False, patience: float = SETTLE_TIMEOUT_S) -> None:
        give_up = deadline if hard else min(deadline, time.monotonic() + patience)
        while not ready():
            if self.done() and hard:
                return
            if time.monotonic() > give_up:
                if hard or time.monotonic() > deadline:
                    raise FleetloopError(f"the evaluation timed out waiting for {what}")
                log.warning("milestone %d: gave up waiting for %s after %.0f s", self.limit, what, patience)
                return
            if on_wait is not None:
                on_wait()
            time.sleep(POLL_S)


__all__ = ["DRIVEN_JOBS", "Conductor"]

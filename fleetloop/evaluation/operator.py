"""The evaluation's operator: rolls out the newest candidate that passed the hub's gate (no test of its own)."""

from __future__ import annotations

import logging

from fleetloop.evaluation.plan import FleetPlan
from fleetloop.evaluation.settings import LoopSettings
from fleetloop.evaluation.technicians import Desk
from hub.app.service import HubService
from shared.errors import FleetloopError

log = logging.getLogger(__name__)


class Operator:
    """Rolls out the newest candidate that passed its gate, one rollout at a time, while every gateway still has
    two engine lives of replay left (a stage advances only on evidence from running gateways).

    The gate's verdict is the only judgement of a candidate's quality: the operator adds none (an operator of the
    product has only the gate too). It skips a candidate trained on the label set the fleet's model already learned
    from: a drift alarm's retrain with no new labels makes the same model again, so there is nothing to roll out.
    """

    def __init__(self, hub: HubService, settings: LoopSettings, desk: Desk, plan: FleetPlan, rate: float) -> None:
        self.hub, self.settings, self.desk, self.plan, self.rate = hub, settings, desk, plan, rate
        self.tried: set[str] = set()
        self.completed: list[str] = []
        self.current: str | None = None

    def summary(self) -> str:
        running = self.hub.rollouts.running()
        now = f"{running.plan.candidate}@{running.state.stage}" if running else "idle"
        return f"{len(self.completed)} done, {now}"

    def run(self, now: float) -> None:
        rollouts = self.hub.rollouts
        if self.current is not None:
            r = rollouts.recent(limit=1)[0]
            if r.state.status == "running":
                return
            log.info("rollout of %s %s: %s", r.plan.candidate, r.state.status, r.decision.reason if r.decision else "")
            if r.state.status == "completed":
                self.completed.append(r.plan.candidate)
            self.current = None
        rows = sorted(self.hub.store.model_versions(status="candidate", limit=50), key=lambda r: r.created_ts)
        fresh = [r for r in rows if r.version not in self.tried and (r.gate or {}).get("passed")]
        if not fresh:
            return
        row = fresh[-1]
        self.tried |= {r.version for r in fresh}
        gate = row.gate or {}
        cand, inc = gate.get("candidate", {}).get("f1") or 0.0, gate.get("incumbent", {}).get("f1") or 0.0
        active = self.hub.registry.active_version()
        serving = self.hub.registry.manifest(active) if active else None
        labels = row.manifest.get("training", {}).get("label_set_version")
        if serving is not None and labels is not None and labels == serving.training.label_set_version:
            log.info("not rolling out %s: trained on the label set %s already serves (%s)", row.version, active,
                     labels)
            return
        positions = {d: p.position for d, p in self.desk.progress.items()}
        left = min(g.cycles - positions.get(g.device_id, 0) for g in self.plan.gateways)
        if left < 2 * self.settings.engine_s * self.rate:
            log.info("not rolling out %s: a gateway has only %d cycles of replay left", row.version, left)
            return
        try:
            rollout = rollouts.start(row.version, actor="operator:eval", canary=self.settings.canary,
                                     reason=f"passed the gate: F1 {cand:.3f} vs {inc:.3f} on the frozen slice",
                                     policies=self.settings.policies, limits=self.settings.limits)
        except FleetloopError as exc:  # e.g. the registry moved meanwhile: the next candidate gets its turn
            log.warning("could not roll out %s: %s", row.version, exc)
            return
        self.current = rollout.id
        log.info("rolling out %s (F1 %.3f vs %.3f on the gate's slice): canary %s", row.version, cand, inc,
                 ", ".join(rollout.plan.stage("canary").devices))


__all__ = ["Operator"]

"""The scripted story, phase by phase, against a running fleet, hub and broker (see `fleetloop.story`).

1. *online*: every agent serving v1, known to the hub;
2. *healthy*: the fleet runs until the drifted site's sensors go wrong (the injection, read from the agents' logs);
3. *reference*: the operator re-takes v1's drift reference from the fleet's commissioning traffic, the healthy
   stats before the injection, through the API (``POST /drift/reference``, each device and cohort with its own
   baseline; audited): the shipped v1 describes the machines it trained on, and against it this fleet reads as
   drifted from the start. (Taken once the window is over, so a slow machine cannot let the drift into it.)
4. *drift*: the hub's drift job flags the fleet (features and PSI recorded) and locates the drifted devices;
5. *retrain*: technicians label; the hub's trigger job retrains on drift once enough labels exist; the gate;
6. *rollout*: the operator rolls the candidate out through the API: canary, then the fleet; recovered fleet;
7. *recovered*: the fleet runs on the new version for a while;
8. *bad candidate*: a retrain on flipped labels is rejected by the gate; its rollout is refused (409);
9. *canary failure*: a candidate giving NaN on gateways fails its canary and is rolled back automatically.

The ``new-failure-mode`` scenario (`StoryProfile.scenario`) plays 1-3, then *performance* (no drift: the labels
show v1's recall dropping, ``performance_degraded``), 5-7 (the retrain's trigger is ``performance``), then
*no_drift* (the drift events judged against the re-taken reference up to the retrain, by scope), without 8-9.

Each wait polls (and refreshes the console) and gives up after the profile's timeout with `StoryError`; the
story then stops where it is and the outcome says how far it got.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetloop.fleet.logs import AgentLogs
from fleetloop.story import words
from fleetloop.story.faults import nan_candidate, sabotaged_retrain
from fleetloop.story.operator import Operator, StoryError
from fleetloop.story.profile import StoryProfile, stage_policies
from fleetloop.story.timeline import Timeline
from fleetloop.story.wiring import HubRig
from hub.store.rows import DRIFT_EVENT, TrainingJobRow
from hub.training.performance import PERFORMANCE_EVENT
from hub.training.triggers import retry_threshold
from shared.wire import to_json_data
from sim.desk import TechnicianDesk
from sim.technicians import SimDevice

__all__ = ["Status", "Story", "StoryOutcome"]

log = logging.getLogger(__name__)

NAN_VERSION = "nan-1"
TERMINAL = ("completed", "rolled_back", "aborted")


@dataclass(frozen=True)
class Status:
    """One line of live progress."""

    elapsed_s: float
    phase: str
    online: int
    devices: int
    predictions_per_s: float
    labels: int
    drift: str
    rollout: str
    versions: Mapping[str, int]


RETRAIN_ATTEMPTS = 3
"""Drift-fix candidates the story lets the gate judge before it gives up."""


@dataclass
class StoryOutcome:
    """What the story established (None: it did not get that far)."""

    reference_at: float | None = None  # when the operator re-took v1's drift reference (its window ends earlier)
    reference: dict[str, Any] | None = None  # the re-taken reference, as the API answered
    injected_at: float | None = None
    drift_detected_at: float | None = None
    drift_features: list[str] = field(default_factory=list)
    retrain: dict[str, Any] | None = None  # the drift retrain's job, as the API shows it (the last attempt)
    # what the hub's first retrain of the fix was triggered by (drift, performance, ...): a retry the operator asks
    # for after the gate blocked a candidate is ``manual``, but the fix started with the hub's trigger
    trigger: str | None = None
    candidate: str | None = None
    gate: dict[str, Any] | None = None  # the candidate's gate decision
    promoted_version: str | None = None
    recovered_at: float | None = None
    blocked: list[str] = field(default_factory=list)  # drift-fix candidates the gate kept from the fleet
    bad_version: str | None = None
    bad_gate: dict[str, Any] | None = None
    bad_refused: bool = False
    nan_version: str | None = None
    nan_rolled_back: bool = False
    performance: dict[str, Any] | None = None  # the first performance_degraded event of v1 (payload), when one came
    # drift events by scope kind (fleet, cohort, device) judged against the re-taken reference up to the retrain
    drift_events: dict[str, int] | None = None
    failed: str | None = None  # why the story stopped early


class Story:
    """Runs the phases; `status()` may be called from the console at any time."""

    def __init__(self, profile: StoryProfile, rig: HubRig, operator: Operator, desk: TechnicianDesk,
                 devices: Mapping[str, SimDevice], drifted: list[str], logs: AgentLogs, timeline: Timeline,
                 workdir: Path, *, refresh: Callable[[], None] = lambda: None) -> None:
        self.profile, self.rig, self.operator, self.desk = profile, rig, operator, desk
        self.devices, self.drifted, self.logs, self.timeline = devices, drifted, logs, timeline
        self.workdir = workdir
        self.refresh = refresh
        self.outcome = StoryOutcome()
        self.phase = "starting"
        self._sabotage: list[TrainingJobRow] = []
        self._sabotage_error: list[BaseException] = []
        self._sabotage_thread: threading.Thread | None = None

    # -- the phases -------------------------------------------------------------------------------------
    def run(self) -> StoryOutcome:
        """Play every phase; a `StoryError` ends the story early (recorded in the outcome and the timeline)."""
        try:
            for name, title, play in self.phases():
                self.phase = name
                with self.timeline.phase(name, title):
                    play()
        except StoryError as exc:
            self.outcome.failed = f"{self.phase}: {exc}"
            self.timeline.add("story_failed", f"the story stopped in phase {self.phase}: {exc}", phase=self.phase)
        self.phase = "done"
        return self.outcome

    def phases(self) -> list[tuple[str, str, Callable[[], None]]]:
        """The scenario's phases: (name, title, play)."""
        site = self.profile.drift_site
        start = [("online", "agents come online", self._online), ("healthy", "healthy operation", self._healthy),
                 ("reference", "v1's drift reference from the fleet's commissioning traffic", self._reference)]
        fix = [("retrain", "technicians label, the hub retrains and gates", self._retrain),
               ("rollout", "rollout: canary, then the fleet", self._rollout),
               ("recovered", "the recovered fleet", self._recovered)]
        if self.profile.scenario == "new-failure-mode":
            return [*start, ("performance", f"a new failure mode on {site}: the labels tell", self._performance),
                    *fix, ("no_drift", "the drift job's verdicts before the retrain", self._no_drift)]
        return [*start, ("drift", f"bad sensor recalibration on {site}", self._drift), *fix,
                ("bad_candidate", "a candidate trained on flipped labels", self._bad_candidate),
                ("canary_failure", "a candidate that fails on gateways", self._canary_failure)]

    def _online(self) -> None:
        n = len(self.devices)
        self.wait(lambda: sum(1 for d in self._hub_devices() if d.online and d.model_version) == n,
                  f"{n} agents online")
        self.timeline.add("online", f"{n} agents online, serving "
                          f"{', '.join(sorted({d.model_version or '?' for d in self._hub_devices()}))}", devices=n)

    def _reference(self) -> None:
        """The operator re-takes v1's reference from the fleet's stats between the start and the injection, once they
        are in: every device needs `StoryProfile.reference_windows` (its own baseline needs ``min_samples``)."""
        origin, end, want = self.timeline.origin, self.outcome.injected_at, self.profile.reference_windows
        assert end is not None

        def windows() -> dict[str, int]:
            out: dict[str, int] = {}
            for row in self.rig.store.stats_between(origin, end):
                if row.device_id in self.devices and row.model_version == "v1":
                    out[row.device_id] = out.get(row.device_id, 0) + row.windows
            return out

        self.wait(lambda: len(windows()) == len(self.devices) and min(windows().values()) >= want,
                  f"{want} healthy windows of v1 from every device before the drift (a longer drift_step)")
        taken = self.operator.take_reference("v1", origin, end, reason="commissioning: this fleet's own healthy "
                                             "traffic, each device and cohort with its own baseline")
        self.outcome.reference_at, self.outcome.reference = time.time(), taken
        per_device = taken["summary"].get("devices_windows", {})
        self.timeline.add("reference_taken", f"operator re-takes v1's drift reference from {taken['windows']} "
                          f"healthy windows of {len(per_device)} devices before the drift (at least "
                          f"{min(per_device.values())} each, own baselines)", reference=taken["id"],
                          windows=taken["windows"])

    def _healthy(self) -> None:
        step = self.profile.drift_step

        def injected() -> float | None:
            seen = [self.logs.first_scored_after(d, self.devices[d].ts_of(step)) for d in self.drifted]
            return min((t for t in seen if t is not None), default=None)

        self.wait(lambda: injected() is not None, f"reading {step} on {self.profile.drift_site}")
        at = injected()
        assert at is not None
        self.outcome.injected_at = at
        drifts = [to_json_data(d) for d in self.devices[self.drifted[0]].drifts]
        if self.profile.scenario == "new-failure-mode":
            what = "the usual wear stops showing over a failure's last readings, the motor current hunts instead"
            self.timeline.add("drift_injected", f"a new failure mode appears on {len(self.drifted)} devices of "
                              f"{self.profile.drift_site}: {what}", at=at, devices=self.drifted, drifts=drifts)
            return
        what = ", ".join(f"{d['sensor']} {d['offset']:+g}" for d in drifts if d.get("kind") == "sensor_offset")
        self.timeline.add("drift_injected", f"{self.profile.drift_site}'s sensors recalibrated badly on "
                          f"{len(self.drifted)} devices: {what}", at=at, devices=self.drifted, drifts=drifts)

    def _drift(self) -> None:
        assert self.outcome.injected_at is not None
        store = self.rig.store

        reference = (self.outcome.reference or {}).get("id")  # against the shipped one the fleet reads as drifted

        def fleet_event() -> Any:
            judged = {r.id: r for r in store.drift_reports(limit=1000, scope="fleet@v1")
                      if r.report.get("reference", {}).get("id") == reference}
            return next((e for e in store.events(kind=DRIFT_EVENT, limit=100_000)
                         if e.payload.get("report_id") in judged), None), judged

        self.wait(lambda: fleet_event()[0] is not None, "the hub to detect fleet drift")
        event, judged = fleet_event()
        report = judged[event.payload["report_id"]]
        psi = {f["name"]: f["psi"] for f in (report.report.get("features", []) if report else [])}
        features = list(event.payload.get("drifted_features", []))
        self.outcome.drift_detected_at, self.outcome.drift_features = event.ts, features
        top = ", ".join(f"{f} (PSI {psi.get(f, float('nan')):.2f})" for f in features[:4])
        self.timeline.add("drift_detected", f"fleet drift detected {event.ts - self.outcome.injected_at:.1f} s after "
                          f"the injection: {top}", at=event.ts, scope=event.payload.get("scope"),
                          features=features, psi={f: psi.get(f) for f in features})

    def _performance(self) -> None:
        """No input drifts: the technicians' labels show v1 missing failures it caught at its gate. The hub's
        monitor (`hub.training.performance`) records ``performance_degraded``; the trigger job retrains on it."""
        store, since = self.rig.store, self.outcome.injected_at or 0.0

        def degraded() -> Any:  # on recall, after the injection: the false-alarm side is not this scenario's point
            return next((e for e in store.events(kind=PERFORMANCE_EVENT, limit=1000)
                         if e.payload.get("model_version") == "v1" and e.ts >= since
                         and ((e.payload.get("figures") or {}).get("recall") or {}).get("verdict") == "degraded"),
                        None)

        event = self.wait(degraded, "the labels to show v1's recall dropping (performance_degraded)")
        self.outcome.performance = {"ts": event.ts, **event.payload}
        figures = event.payload.get("figures") or {}
        self.timeline.add("performance_degraded", f"v1's realized performance degraded ({figures.get('scope')}): "
                          f"{event.payload.get('reason')}", at=event.ts, scope=figures.get("scope"),
                          failures=figures.get("failures"), missed=figures.get("missed"))

    def _no_drift(self) -> None:
        """Count the drift events judged against v1's re-taken reference from the injection to the retrain, while v1
        served every device (the scenario's claim: none at the fleet scope, the one that asks for a retrain; the new
        failure mode leaves healthy operation as it was). Device and cohort scopes of the affected machines may flag
        v1's scores shifting (its alarms on their failures vanish) or the new symptom itself, and are reported."""
        reference = (self.outcome.reference or {}).get("id")
        until = (self.outcome.retrain or {}).get("created_ts") or time.time()
        judged = {r.id for r in self.rig.store.drift_reports(limit=100_000)
                  if r.report.get("reference", {}).get("id") == reference}
        events = [e for e in self.rig.store.events(kind=DRIFT_EVENT, limit=100_000)
                  if e.payload.get("report_id") in judged and e.ts <= until]
        by_kind = {kind: sum(str(e.payload.get("scope")).startswith(kind) for e in events)
                   for kind in ("fleet", "cohort", "device")}
        self.outcome.drift_events = by_kind
        self.timeline.add("drift_verdicts", f"{len(judged)} drift reports against v1's re-taken reference; up to "
                          f"the retrain, drift events fleet {by_kind['fleet']}, cohort {by_kind['cohort']}, "
                          f"device {by_kind['device']}",
                          reports=len(judged), **by_kind)

    def _retrain(self) -> None:
        """The hub's drift retrain, gated. A candidate the gate blocks (say, the healthy site lost recall) is the
        loop working, not the story failing: the technicians go on labelling and the operator asks for another
        retrain once a quarter more labels are in, up to `RETRAIN_ATTEMPTS` candidates in all. A candidate the gate
        could not judge (too few failures) needs no operator: the hub retrains on its own at a quarter more."""
        first = self.wait(lambda: self.operator.jobs(limit=1) or None, "the hub to trigger a retrain")
        job = first[0]
        self.outcome.trigger = job["trigger"]
        for attempt in range(1, RETRAIN_ATTEMPTS + 1):
            labels = self._labels(job.get("label_set_id"))
            self.timeline.add("retrain_started", f"retrain triggered ({job['trigger']}: {job['reason']}) on {labels} "
                              f"validated labels", at=job["created_ts"], job=job["id"], trigger=job["trigger"],
                              labels=labels, desk=vars(self.desk.tally))
            job_id = job["id"]
            done = self.wait(lambda: self._finished(job_id), "the retrain to finish")  # noqa: B023 (called at once)
            self.outcome.retrain = done
            if done["status"] != "succeeded" or not done.get("result_version"):
                raise StoryError(f"the retrain failed: {done.get('error')}")
            version = done["result_version"]
            gate = self.operator.model(version).get("gate") or {}
            self.outcome.candidate, self.outcome.gate = version, gate
            self.timeline.add("gate", f"{version}: gate {done['gate_verdict']} — {gate_line(gate)}",
                              at=done.get("finished_ts"), version=version, verdict=done["gate_verdict"],
                              **gate_numbers(gate))
            if done["gate_verdict"] == "pass":
                return
            self.outcome.blocked.append(version)
            if attempt == RETRAIN_ATTEMPTS:
                raise StoryError(f"the gate did not pass {version}: {'; '.join(gate.get('reasons', []))}")
            why = "failed: " + ", ".join(words.failed_checks(gate))
            if done["gate_verdict"] == "insufficient_data":
                # The hub's trigger retries on its own once a quarter more labels are validated (no cooldown).
                want = retry_threshold(self.rig.settings.training.triggers, labels)
                self.timeline.add("gate_blocked", f"the gate could not judge {version} ({why}); technicians go on "
                                  f"labelling, the hub retrains again at {want} validated labels", version=version)
                job = self.wait(lambda: self._newer_job(job_id), f"the hub's retrain at {want} labels")  # noqa: B023
                continue
            # A quarter more of the technicians' annotations (log entries count once, however many windows they cover).
            want = int(self.desk.tally.annotations * 1.25) + 1
            self.timeline.add("gate_blocked", f"the gate kept {version} from the fleet ({why}); technicians go on "
                              f"labelling, the operator retrains again at {want} annotations", version=version)
            self.wait(lambda: self.desk.tally.annotations >= want, f"{want} annotations")  # noqa: B023
            queued = self.operator.retrain(f"{version} was blocked by the gate; retrain with more labels")
            job = next(j for j in self.operator.jobs(limit=5) if j["id"] == queued["job_id"])

    def _newer_job(self, job_id: str) -> dict[str, Any] | None:
        newest = self.operator.jobs(limit=1)
        return newest[0] if newest and newest[0]["id"] != job_id else None

    def _finished(self, job_id: str) -> dict[str, Any] | None:
        return next((j for j in self.operator.jobs(limit=5)
                     if j["id"] == job_id and j["status"] in ("succeeded", "failed")), None)

    def _rollout(self) -> None:
        version = self.outcome.candidate
        assert version is not None
        if self.profile.scenario == "drift":
            self._start_sabotage()
        what = "new failure mode" if self.profile.scenario == "new-failure-mode" else "recalibration drift"
        started = self.operator.start_rollout(version, reason=f"fix for the {what} on {self.profile.drift_site}",
                                              canary=self._canary_share(),
                                              policies=stage_policies(self.profile))
        canary = next(s["devices"] for s in started["stages"] if s["name"] == "canary")
        self.timeline.add("rollout_started", f"operator rolls {version} out: canary {', '.join(canary)}",
                          rollout=started["id"], version=version, stage="canary", devices=canary)
        final = self._follow(started["id"], version)
        if final["status"] != "completed":
            raise StoryError(f"the rollout of {version} ended {final['status']}: "
                             f"{(final.get('decision') or {}).get('reason')}")
        self.wait(lambda: self._serving() == {version: len(self.devices)}, f"every device serving {version}")
        self.outcome.promoted_version, self.outcome.recovered_at = version, time.time()
        since = self.outcome.injected_at or self.timeline.origin
        self.timeline.add("recovered", f"fleet recovered: all {len(self.devices)} devices serve {version}, "
                          f"{self.outcome.recovered_at - since:.1f} s after the drift", version=version)

    def _recovered(self) -> None:
        end = time.time() + self.profile.recovered_s
        self.wait(lambda: time.time() >= end, "the recovered period", timeout=self.profile.recovered_s + 5)

    def _start_sabotage(self) -> None:
        """Start the flipped-label retrain in the background: it trains while the fix rolls out, on the fix's labels."""
        hub = self.rig.hub
        label_set = (self.outcome.retrain or {}).get("label_set_id")

        def train() -> None:
            try:
                job = sabotaged_retrain(
                    hub.store, hub.registry, hub.settings.training, labels=hub.settings.labels,
                    staging_dir=self.workdir / "sabotage", actor="story:faults", reason="labels flipped on purpose",
                    label_set_id=label_set)
                self._sabotage.append(job)
                if job.result_version:
                    self._bad_gate(job.result_version, job)  # told when it happens: the timeline stays in order
            except Exception as exc:  # reported by _bad_candidate, in the story's thread
                self._sabotage_error.append(exc)

        self._sabotage_thread = threading.Thread(target=train, name="sabotaged-retrain", daemon=True)
        self.timeline.add("bad_retrain", f"meanwhile, a retrain on {self.outcome.candidate}'s labels, all flipped on "
                          "purpose, starts", label_set=label_set)
        self._sabotage_thread.start()

    def _bad_candidate(self) -> None:
        if self._sabotage_thread is None:
            self._start_sabotage()
        thread = self._sabotage_thread
        assert thread is not None
        self.wait(lambda: not thread.is_alive(), "the sabotaged retrain")
        errors, result = self._sabotage_error, self._sabotage
        if errors or not result or not result[0].result_version:
            raise StoryError(f"the sabotaged retrain failed: {errors[0] if errors else result[0].error}")
        job = result[0]
        version = job.result_version
        assert version is not None and self.outcome.bad_version == version
        if job.gate_verdict == "pass":
            raise StoryError(f"the gate passed {version}, a model trained on flipped labels")
        refused = self.operator.try_rollout(version, reason="roll out the flipped-label model anyway",
                                            canary=self._canary_share())
        self.outcome.bad_refused = refused.status_code == 409
        detail = refused.json().get("detail") if refused.headers.get("content-type") == "application/json" else ""
        self.timeline.add("rollout_refused" if refused.status_code == 409 else "rollout_started",
                          f"POST /rollouts {version}: {refused.status_code} {detail}", version=version,
                          status=refused.status_code)

    def _bad_gate(self, version: str, job: TrainingJobRow) -> None:
        gate = self.operator.model(version).get("gate") or {}
        self.outcome.bad_version, self.outcome.bad_gate = version, gate
        self.timeline.add("gate", f"{version}: gate {job.gate_verdict} — {gate_line(gate)}; failed: "
                          f"{', '.join(words.failed_checks(gate)) or '-'}", at=job.finished_ts, version=version,
                          verdict=job.gate_verdict, **gate_numbers(gate))

    def _canary_failure(self) -> None:
        hub = self.rig.hub
        parent = hub.registry.active_version()
        assert parent is not None
        out = nan_candidate(hub.registry.path(parent), self.workdir / NAN_VERSION, version=NAN_VERSION,
                            parent_version=parent)
        hub.registry.register(out, actor="story:faults", reason="passes on the hub, gives NaN on gateways")
        hub.registry.skip_gate(NAN_VERSION, actor="story:faults", reason="made by hand to break on the gateways")
        canary = [sorted(self.devices)[-1]]
        started = self.operator.start_rollout(NAN_VERSION, reason="a model that breaks on the gateways' runtime",
                                              canary=canary, policies=stage_policies(self.profile))
        self.outcome.nan_version = NAN_VERSION
        self.timeline.add("rollout_started", f"operator rolls {NAN_VERSION} out: canary {canary[0]}",
                          rollout=started["id"], version=NAN_VERSION, stage="canary", devices=canary)
        final = self._follow(started["id"], NAN_VERSION)
        self.outcome.nan_rolled_back = final["status"] == "rolled_back" and final["stage"] == "canary"
        if final["status"] != "rolled_back":
            raise StoryError(f"the NaN candidate's rollout ended {final['status']}, not rolled back")
        self.wait(lambda: self._serving() == {parent: len(self.devices)}, f"every device back on {parent}")
        self.timeline.add("restored", f"every device serves {parent} again; {NAN_VERSION} never left the canary",
                          version=parent)

    # -- helpers ----------------------------------------------------------------------------------------
    def _canary_share(self) -> float:
        """A canary of one device per cohort (the hub's planner covers cohorts): its anomaly rate and scores then
        mix the cohorts as the candidate's reference does, where a single pump would read ×2 off the fleet's."""
        cohorts = len({d.config.cohort for d in self.devices.values()})
        return min(0.9, (cohorts - 0.5) / len(self.devices))  # the planner takes ceil(share × devices) = cohorts

    def _follow(self, rollout_id: str, version: str) -> dict[str, Any]:
        """Record the rollout's stage changes until it ends; returns its final state (``GET /rollouts/{id}``)."""
        seen = {"canary"}
        state: dict[str, Any] = {}

        def ended() -> bool:
            nonlocal state
            state = self.operator.rollout(rollout_id)
            if state["stage"] not in seen and state["status"] == "running":
                seen.add(state["stage"])
                devices = next(s["devices"] for s in state["stages"] if s["name"] == state["stage"])
                self.timeline.add("stage", f"{version}: {state['stage']} stage ({len(devices)} devices)",
                                  rollout=rollout_id, version=version, stage=state["stage"], devices=devices)
            return state["status"] in TERMINAL

        stages = stage_policies(self.profile).values()
        self.wait(ended, f"the rollout of {version}", timeout=sum(p["timeout_s"] for p in stages) + 30)
        reason = (state.get("decision") or {}).get("reason", "")
        kind = {"completed": "rollout_completed", "rolled_back": "rollback"}.get(state["status"], "rollout_ended")
        self.timeline.add(kind, f"{version}: {state['status']} — {reason}", rollout=rollout_id, version=version,
                          stage=state["stage"], status=state["status"])
        return state

    def _labels(self, label_set_id: str | None) -> int:
        return len(self.rig.store.label_set_items(label_set_id)) if label_set_id else 0

    def _hub_devices(self) -> list[Any]:
        return [d for d in self.rig.store.devices() if d.device_id in self.devices]

    def _serving(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self._hub_devices():
            out[d.model_version or "-"] = out.get(d.model_version or "-", 0) + 1
        return out

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        """Poll `predicate` until it gives something truthy (returned); StoryError after the timeout."""
        deadline = time.monotonic() + (self.profile.timeout_s if timeout is None else timeout)
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StoryError(f"timed out waiting for {what}")
            self.refresh()
            time.sleep(0.25)

    def status(self) -> Status:
        """Devices online, predictions/s (from the agents' last stats), labels, fleet drift, rollout stage."""
        store, now = self.rig.store, time.time()
        devices = self._hub_devices()
        stats = [s for s in store.stats_between(now - 5.0, now + 5.0) if s.device_id in self.devices]
        latest: dict[str, Any] = {}
        for s in stats:
            if s.device_id not in latest or s.period_end > latest[s.device_id].period_end:
                latest[s.device_id] = s
        rate = sum(s.windows / max(s.period_end - s.period_start, 1e-3) for s in latest.values())
        fleet = next((r for r in store.drift_reports(limit=40) if r.scope.startswith("fleet@")), None)
        drift = "-"
        if fleet is not None:
            top = max(fleet.report.get("features", []), key=lambda f: f.get("psi") or 0.0, default=None)
            drift = fleet.verdict + (f" (max PSI {top['psi']:.2f} {top['name']})" if top and top.get("psi") else "")
        running = self.rig.hub.rollouts.running()
        rollout = "-"
        if running is not None:
            stage = running.plan.stage(running.state.stage)
            rollout = f"{running.plan.candidate} {running.state.stage} ({len(stage.devices)} devices)"
        else:
            recent = self.rig.hub.rollouts.recent(limit=1)
            if recent:
                rollout = f"{recent[0].plan.candidate} {recent[0].state.status}"
        return Status(now - self.timeline.origin, self.phase, sum(d.online for d in devices), len(self.devices),
                      rate, self.desk.tally.annotations, drift, rollout, self._serving())


def gate_numbers(gate: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of a stored gate decision (tolerant of older and newer records)."""
    cand, inc = gate.get("candidate") or {}, gate.get("incumbent") or {}
    return {"passed": gate.get("passed"), "candidate_recall": cand.get("recall"),
            "candidate_far": cand.get("false_alarm_rate"), "incumbent_recall": inc.get("recall"),
            "incumbent_far": inc.get("false_alarm_rate"), "n_pos": cand.get("n_pos"), "n_neg": cand.get("n_neg"),
            "reasons": list(gate.get("reasons", []))}


def gate_line(gate: Mapping[str, Any]) -> str:
    return words.gate_line(gate_numbers(gate))

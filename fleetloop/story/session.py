"""One run of the story from nothing to a report: set up, play, tear down (in order, also on Ctrl-C), measure.

Set-up: the work dir (locked; the built initial model is kept between runs, everything else starts afresh),
the API port and the broker (a busy port or a missing mosquitto is a one-line `ConfigError` before anything
expensive), the initial model registered as v1 (its drift reference is re-taken from the fleet by the story's
operator), the hub in production mode (provisioned signing key, broker password, API tokens) with its API and
the technicians' desk, then the agents. Tear-down: agents (SIGTERM, they drain their outboxes), the desk, the API,
the hub, the broker. Then the metrics from the agents' logs, the summary and the report.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetloop.devbroker import HUB_USER, DevBroker
from fleetloop.fleet import Fleet, FleetSettings, plan_fleet
from fleetloop.fleet.logs import AgentLogs, DeviceLog
from fleetloop.story.console import StoryConsole
from fleetloop.story.metrics import Accuracy, accuracy, score_windows
from fleetloop.story.operator import Operator
from fleetloop.story.profile import StoryProfile, agent_overrides, hub_settings
from fleetloop.story.report import DriftPoint, drift_series, write_report
from fleetloop.story.script import Story, StoryOutcome, gate_numbers
from fleetloop.story.timeline import Timeline
from fleetloop.story.wiring import HubRig, bind_loopback, new_tokens
from fleetloop.technicians import ApiInbox, MachineLogs, technician_desk
from hub.registry.signing import SigningKey
from shared.errors import ConfigError
from sim.technicians import GroundTruth

__all__ = ["StoryOptions", "default_workdir", "play"]

log = logging.getLogger("fleetloop.story")

MODEL_SEED = 7  # the initial recipe's seed: --seed changes the machines, not the model
FAST_RECIPE = (30, 2500)  # machines, steps: about half the recipe's build time, still a good model
FRESH = ("broker", "hub", "agents", "run")  # work-dir entries every run starts without
# The queue's technicians, by site: wrong one time in 50 and in 20, answering `fleetloop.technicians.QUEUE_PER_HOUR`
# items an hour of the machines' clock each; the on-site technician keeps a maintenance log of failures and
# inspections as time ranges (`sim.maintenance`: one failure in 20 never logged, ends off by up to 2 windows, an
# inspection vouching for the time since the machine's last entry, one in 20 over a wearing machine called healthy).
# About 45 % of the windows end up labelled, ~320 labels per device-hour of 720 windows (README). At one in 10
# wrong on the healthy site the retrained candidate lost recall there often enough for the gate to refuse it three
# times (1 demo in ~5 under a parallel test run): the hub does not yet weigh a technician's labels by their
# agreement with others (issue 14).
TECHNICIAN_ERROR_RATES = (0.02, 0.05)
KEPT_AGENTS_S = 3600.0  # with --keep, the agents' own safety net (they stop by themselves if this process dies)


@dataclass(frozen=True)
class StoryOptions:
    profile: StoryProfile
    seed: int
    workdir: Path
    report: Path
    broker_port: int | None = None
    api_port: int | None = None
    live: bool | None = None  # rich live panel (default: when stderr is a terminal)
    # --keep: called with the summary once the story is over and its report written, while the fleet, the hub
    # (API and console) and the broker keep running; Ctrl-C (or SIGTERM) then stops them in order
    # (its arguments: the summary, the API tokens by role to sign in to the console with)
    keep: Callable[[dict[str, Any], dict[str, str]], None] | None = None


def default_workdir() -> Path:
    """``$XDG_CACHE_HOME/fleetloop/demo`` (``~/.cache/…``): the built model survives between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetloop" / "demo"


@contextmanager
def _locked(workdir: Path) -> Iterator[None]:
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another fleetloop demo is running in {workdir}: wait for it, or pass "
                              "--workdir") from None
        yield


@contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """The hub's own INFO lines repeat what the timeline says; show them only with -vv (debug)."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    names = ("hub", "httpx", "uvicorn", "models")
    before = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for n, level in before.items():
            logging.getLogger(n).setLevel(level)


def ensure_model(out: Path, *, recipe: str) -> Path:
    """The initial model version (``v1``) in `out`, built by the initial recipe unless a previous run did."""
    if (out / "manifest.json").is_file():
        log.info("using the initial model built before in %s", out)
        return out
    from models.initial import build_initial  # scikit-learn, skl2onnx: only when building

    log.info("building the initial model %s from the simulator (a few seconds; kept in the work dir)", out.name)
    started = time.monotonic()
    if out.parent.exists():
        shutil.rmtree(out.parent)
    if recipe == "fast":
        build_initial(out, seed=MODEL_SEED, version=out.name, n_machines=FAST_RECIPE[0], steps=FAST_RECIPE[1])
    else:
        build_initial(out, seed=MODEL_SEED, version=out.name)
    log.info("model %s built in %.1f s", out.name, time.monotonic() - started)
    return out


def play(options: StoryOptions) -> dict[str, Any]:
    """Run the whole story; the summary (``interrupted`` after Ctrl-C, ``failed`` when the story stopped early)."""
    with _locked(options.workdir), _quiet_hub_logs():
        return _Session(options).run()


class _Session:
    def __init__(self, options: StoryOptions) -> None:
        self.o, self.p = options, options.profile
        self.wall0 = time.monotonic()
        self.timeline = Timeline()
        self.console = StoryConsole(live=options.live, plain_every_s=5.0 if self.p.name == "default" else 3.0)
        self.timeline.listeners.append(self.console.event)
        self.broker: DevBroker | None = None
        self.rig: HubRig | None = None
        self.fleet: Fleet | None = None
        self.operator: Operator | None = None
        self.story: Story | None = None
        self.outcome = StoryOutcome()
        self.exit_codes: dict[str, int | None] = {}
        self.tokens = new_tokens()
        self.desk_io: tuple[ApiInbox, MachineLogs] | None = None

    def run(self) -> dict[str, Any]:
        work = self.o.workdir
        for name in FRESH:
            shutil.rmtree(work / name, ignore_errors=True)
        specs = plan_fleet(self.p.devices, self.o.seed, drift=lambda s: self.p.drifts(s.machine.site))
        api_sock = bind_loopback(self.o.api_port)
        interrupted = False
        collected: dict[str, Any] = {}
        kept: dict[str, Any] | None = None
        try:
            self.broker = DevBroker(work / "broker", port=self.o.broker_port, devices=[s.device_id for s in specs])
            self.broker.start()
            with self.console:
                self.timeline.add("setup", f"mosquitto on {self.broker.url} (work dir {work})")
                model = ensure_model(work / "models" / self.p.recipe / "v1", recipe=self.p.recipe)
                self.rig = self._hub(api_sock, model, specs)
                self.timeline.add("setup", f"hub API on {self.rig.api_url} (OpenAPI docs at {self.rig.api_url}/docs), "
                                  f"its console at {self.rig.api_url}/console")
                log.info("console sign-in tokens for this run: %s",
                         ", ".join(f"{role} {token}" for role, token in self.tokens.items()))
                self._start_fleet(specs)
                assert self.story is not None
                self.outcome = self.story.run()
                if self.o.keep is None:
                    self.timeline.add("story_end", "the story is over: stopping the fleet, the hub and the broker")
                    self._stop_fleet()
                else:
                    self.timeline.add("story_end", "the story is over: the fleet, the hub and its console keep "
                                      "running (--keep) until Ctrl-C")
                collected = self._collect()
            if self.o.keep is not None:
                kept = self._summary(collected, interrupted=False)
                self.o.keep(kept, dict(self.tokens))
                threading.Event().wait()  # until Ctrl-C (or SIGTERM, raised as KeyboardInterrupt)
        except KeyboardInterrupt:
            interrupted = kept is None
            log.warning("%s: stopping the agents, the hub and the broker", "interrupted" if interrupted else "Ctrl-C")
        finally:
            self._stop_fleet()
            if self.operator is not None:
                self.operator.close()
            if self.rig is not None:
                self.rig.stop()
            else:
                api_sock.close()
            for closing in self.desk_io or ():
                closing.close()
            if self.broker is not None:
                self.broker.stop()
        if interrupted:
            return self._summary({}, interrupted=True)
        if kept is not None:  # summarised while the fleet ran: how it stopped is known only now
            kept.update(agents_ok=self._agents_ok(), agent_exit_codes=self.exit_codes,
                        wall_s=round(time.monotonic() - self.wall0, 1))
            return kept
        return self._summary(collected, interrupted=False)

    # -- set-up --------------------------------------------------------------------------------------------
    def _hub(self, api_sock: Any, model: Path, specs: list[Any]) -> HubRig:
        assert self.broker is not None
        work, tokens = self.o.workdir, self.tokens
        url = "http://{}:{}".format(*api_sock.getsockname()[:2])
        key_file = work / "keys" / "model-signing.pem"  # provisioned once, as an operator does; kept between runs
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            SigningKey.create(key_file)
        settings = hub_settings(self.p, data_dir=work / "hub", mqtt_host=self.broker.host, mqtt_port=self.broker.port,
                                mqtt_password=self.broker.password(HUB_USER), api_url=url,
                                tokens={t: role for role, t in tokens.items()}, prefix=self.broker.prefix,
                                signing_key_file=key_file)
        rig = HubRig(settings, api_sock)
        v1 = work / "run" / "v1"
        shutil.copytree(model, v1)  # the registry signs the copy in place; the built model stays as it is
        rig.hub.registry.register(v1, actor="operator:ana", reason="initial model (drift reference: the recipe's, "
                                  "until re-taken from this fleet)", status="active")
        rig.start()
        self.operator = Operator(url, tokens["operator"])
        return rig

    def _start_fleet(self, specs: list[Any]) -> None:
        assert self.rig is not None and self.broker is not None
        hub, work = self.rig.hub, self.o.workdir
        start_ts = time.time()
        devices = {s.device_id: s.sim_device(start_ts=start_ts, rate=self.p.rate) for s in specs}
        drifted = sorted(d for d, dev in devices.items() if dev.drifts)
        v1 = hub.registry.manifest("v1")
        assert v1 is not None
        self.horizon = int(v1.training.params.get("horizon") or 100)
        self.truth = GroundTruth()
        # The technicians work as people do: at the hub's queue over HTTP with a technician token, and at the
        # machines through the agents' own databases (fleetloop.technicians).
        desk, inbox, machines = technician_desk(devices, hub_url=self.rig.api_url, token=self.tokens["technician"],
                                    agents_dir=work / "agents", prefix=self.broker.prefix, horizon=self.horizon,
                                    since=start_ts - 1, truth=self.truth,
                                    error_rates=TECHNICIAN_ERROR_RATES)
        self.desk_io = (inbox, machines)
        self.rig.add_job("technicians", 0.5, desk.run)
        settings = FleetSettings(
            host=self.broker.host, port=self.broker.port, passwords=self.broker.credentials,
            model_dir=hub.registry.path("v1"), data_dir=work / "agents", prefix=self.broker.prefix, rate=self.p.rate,
            max_duration_s=max(600.0, 10 * self.p.timeout_s, KEPT_AGENTS_S if self.o.keep else 0.0),
            model_public_key=hub.key.public_key_text(), agent_overrides=agent_overrides(), start_ts=start_ts,
        )
        self.fleet = Fleet(specs, settings)
        self.timeline.rebase(start_ts)
        assert self.operator is not None
        self.story = Story(self.p, self.rig, self.operator, desk, devices, drifted, AgentLogs(work / "agents"),
                           self.timeline, work / "run", refresh=self.console.refresh)
        self.console.status = self.story.status
        cohorts = sorted({s.cohort for s in specs})
        self.timeline.add("setup", f"starting {len(specs)} agents in {len(cohorts)} cohorts ({', '.join(cohorts)}) "
                          f"at {self.p.rate:g} readings/s (clock ×{self.p.rate:g}); drift will hit {len(drifted)} "
                          f"devices on {self.p.drift_site} at reading {self.p.drift_step}")
        self.devices, self.drifted, self.cohorts = devices, drifted, cohorts
        self.fleet.start()

    def _stop_fleet(self) -> None:
        if self.fleet is not None and not self.exit_codes:
            self.fleet.stop()
            self.exit_codes = self.fleet.exit_codes()

    def _agents_ok(self) -> bool:
        return bool(self.exit_codes) and all(c == 0 for c in self.exit_codes.values())

    # -- measuring -------------------------------------------------------------------------------------------
    def _collect(self) -> dict[str, Any]:
        """What the report needs from the hub, read before it stops; the agents' logs once they stopped."""
        assert self.rig is not None
        hub = self.rig.hub
        v1 = hub.registry.manifest("v1")
        assert v1 is not None
        onnx = (hub.registry.path("v1") / "model.onnx").read_bytes()
        logs = [AgentLogs(self.o.workdir / "agents").read(d) for d in sorted(self.devices, key=_device_order)]
        reports = hub.store.drift_reports(limit=100_000)
        return {"logs": logs, "onnx": onnx, "threshold": v1.threshold, "located": located(reports, self.outcome),
                "drift": drift_series(hub.store.drift_reports(limit=100_000), self.timeline.origin),
                "drift_threshold": hub.settings.drift.psi_threshold, "job_failures": self.rig.failures}

    def _summary(self, collected: dict[str, Any], *, interrupted: bool) -> dict[str, Any]:
        o = self.outcome
        acc: Accuracy | None = None
        logs: list[DeviceLog] = collected.get("logs", [])
        if logs:
            windows = score_windows(logs, self.devices, horizon=self.horizon, frozen_onnx=collected["onnx"],
                                    frozen_threshold=collected["threshold"], truth=self.truth)
            acc = accuracy(windows, origin=self.timeline.origin, bucket_s=self.p.bucket_s, injected_at=o.injected_at,
                           recovered_at=o.recovered_at, promoted=o.promoted_version, drifted=self.drifted)
        periods = acc.periods if acc else {}

        def rate(period: str, model: str, key: str) -> float | None:
            r = periods.get(period, {}).get(model)
            value = None if r is None else getattr(r, key)
            return None if value is None or value != value else round(float(value), 4)

        since = o.injected_at
        recovered_s = None if since is None or o.recovered_at is None else round(o.recovered_at - since, 1)
        detected_s = None if since is None or o.drift_detected_at is None else round(o.drift_detected_at - since, 1)
        gate = None if o.gate is None else {"verdict": (o.retrain or {}).get("gate_verdict"), **gate_numbers(o.gate)}
        summary: dict[str, Any] = {
            "scenario": self.p.scenario,
            "performance_degraded": o.performance,
            "drift_events": o.drift_events,
            "retrain_trigger": o.trigger,
            "drift_detected": o.drift_detected_at is not None,
            "promoted_version": o.promoted_version,
            "bad_candidate_rejected": o.bad_refused,
            "canary_rolled_back": o.nan_rolled_back,
            "recall_before": rate("before_fix", "served", "recall"),
            "recall_after": rate("after_fix", "served", "recall"),
            "far_before": rate("before_fix", "served", "far"),
            "far_after": rate("after_fix", "served", "far"),
            "recall_frozen_after": rate("after_fix", "frozen", "recall"),
            "far_frozen_after": rate("after_fix", "frozen", "far"),
            "recall_healthy": rate("healthy", "served", "recall"),
            "drift_to_recovered_s": recovered_s,
            "drift_detected_after_s": detected_s,
            "drift_features": o.drift_features,
            "reference": None if o.reference is None else {k: o.reference.get(k) for k in (
                "id", "actor", "windows", "device_baselines", "start", "end")},
            "drift_located": collected.get("located"),
            "candidate": o.candidate,
            "gate": gate,
            "blocked_candidates": list(o.blocked),
            "bad_version": o.bad_version,
            "bad_gate": None if o.bad_gate is None else {"verdict": "pass" if o.bad_gate.get("passed") else "fail",
                                                         **gate_numbers(o.bad_gate)},
            "nan_version": o.nan_version,
            "report": None,
            "accuracy_png": None,
            "console": None if self.rig is None else f"{self.rig.api_url}/console",
            "devices": self.p.devices,
            "cohorts": getattr(self, "cohorts", []),
            "drift_site": self.p.drift_site,
            "drifted_devices": getattr(self, "drifted", []),
            "profile": self.p.name,
            "seed": self.o.seed,
            "rate": self.p.rate,
            "agents_ok": self._agents_ok(),
            "agent_exit_codes": self.exit_codes,
            "hub_job_failures": collected.get("job_failures"),
            "failed": o.failed,
            "interrupted": interrupted,
            "wall_s": round(time.monotonic() - self.wall0, 1),
            "accuracy": acc.to_json() if acc else None,
            "timeline": self.timeline.to_json(),
        }
        if not interrupted and logs:
            drift: list[DriftPoint] = collected.get("drift", [])
            png = self.o.report.with_name(self.o.report.stem + "-accuracy.png")
            summary.update(report=str(self.o.report), accuracy_png=str(png))
            write_report(self.o.report, summary=summary, timeline=self.timeline, accuracy=acc, drift=drift,
                         drift_threshold=collected.get("drift_threshold", 0.5), logs=logs, drifted=self.drifted)
            summary["wall_s"] = round(time.monotonic() - self.wall0, 1)
        return summary


def located(reports: list[Any], outcome: StoryOutcome) -> dict[str, Any]:
    """Devices and cohorts the drift job located on v1 against its re-taken reference, after the injection: those
    judged drifted in at least half of their conclusive reports (a persistent drift, as an operator reads it).
    `flagged` counts every scope ever judged drifted there, as ``"drift reports/conclusive reports"``: a healthy
    machine's own wander (a near failure, a new life) may read as drift for a window or two."""
    reference, since = (outcome.reference or {}).get("id"), outcome.injected_at
    tally: dict[str, list[int]] = {}
    for r in reports:
        kind, _, name = r.scope.partition(":")
        if (kind not in ("device", "cohort") or not name.endswith("@v1") or reference is None or since is None
                or r.ts < since or r.report.get("reference", {}).get("id") != reference
                or r.verdict not in ("drift", "no_drift")):
            continue
        counts = tally.setdefault(r.scope.removesuffix("@v1"), [0, 0])
        counts[0] += r.verdict == "drift"
        counts[1] += 1
    persistent = sorted(scope for scope, (drift, n) in tally.items() if 2 * drift >= n)
    return {"devices": sorted((s.split(":", 1)[1] for s in persistent if s.startswith("device:")), key=_device_order),
            "cohorts": [s.split(":", 1)[1] for s in persistent if s.startswith("cohort:")],
            "flagged": {scope: f"{drift}/{n}" for scope, (drift, n) in sorted(tally.items()) if drift}}


def _device_order(device_id: str) -> tuple[int, str]:
    tail = device_id.rsplit("-", 1)[-1]
    return (int(tail), device_id) if tail.isdigit() else (1 << 30, device_id)


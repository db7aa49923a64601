"""One C-MAPSS evaluation run through the product: broker, hub, gateways, technicians, operator; then the scores.

1. v1 is trained on `--train-ref` by the C-MAPSS recipe (`models.cmapss`) and registered as the hub's active
   version (the registry signs it); gateways pin the hub's key and start on it.
2. A `DevBroker`, a `HubService` (ingest, drift, trace requests, retrain triggers, rollouts) and its HTTP API
   (gateways download assigned models from it) start, then one ``fleetloop agent run`` process per gateway,
   each replaying its own C-MAPSS file (`plan.write_replay`) at `rate` cycles per second.
3. Technicians (`technicians.Desk`) label feedback engines after they fail; the hub's own trigger job retrains
   on drift and labels, gates the candidate and registers it. An operator (`operator.Operator`) rolls out the newest
   candidate that passed the gate (the gate's verdict only): canary, then the fleet. By default the replay runs
   in lockstep (`conductor.Conductor`): held every half engine life while technicians, triggers, retrains and
   rollouts act, so the run depends on the seed, not on the machine's speed; ``--free-run`` lets the gateways
   replay at their own pace and the hub's jobs run on their periods.
4. When every gateway has replayed its engines, the run stops and every model is scored offline on the
   evaluation engines (`report`): v1 (static), the version the registry has active (the loop's), and an oracle
   trained by the same recipe on every window of every feedback engine.

Ctrl-C (or SIGTERM) stops gateways, hub, API and broker in that order; nothing is left running.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

from fleetloop.devbroker import HUB_USER, DevBroker
from fleetloop.evaluation.conductor import DRIVEN_JOBS, Conductor
from fleetloop.evaluation.operator import Operator
from fleetloop.evaluation.plan import (
    FleetPlan,
    ReplayClock,
    engine_lengths,
    engine_regimes,
    label_offset,
    label_share,
    labelled,
    plan_fleet,
    windows_of,
    write_replay,
)
from fleetloop.evaluation.report import EvalReport, label_free_estimate, score_model
from fleetloop.evaluation.settings import EvalConfig, LoopSettings, loop_settings
from fleetloop.evaluation.technicians import Desk
from fleetloop.fleet import PASSWORD_ENV, sigterm_as_interrupt, to_toml
from hub.app.service import HubService, Periodic
from hub.app.settings import HubSettings
from hub.store.rows import DRIFT_EVENT
from hub.training.service.performance import estimates_now
from infra.datasets import CMAPSS_SENSORS
from shared.errors import ConfigError, FleetloopError
from shared.features import REGIMES, WindowSpec
from shared.regimes import RegimeStats

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0


def check_files(config: EvalConfig) -> None:
    """ConfigError, in one line, when the data folder or one of its files is missing."""
    if not config.data_dir.is_dir():
        raise ConfigError(f"C-MAPSS data folder {config.data_dir} does not exist (pass --data DIR, the folder "
                          "holding train_FD001.txt and train_FD002.txt)")
    for name in (config.train_ref, config.fleet):
        if Path(name).name.lower().startswith(("test_", "rul_")):
            raise ConfigError(f"{name}: labels come from each engine's failure at its last cycle, so the files must "
                              "run to failure (train_FD00x.txt); the test files stop before it")
    missing = [p.name for p in (config.train_ref_path, config.fleet_path) if not p.is_file()]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not found in {config.data_dir}")


def run_eval(config: EvalConfig) -> EvalReport:
    """Run the loop on C-MAPSS as `config` says and measure it (see the module docstring)."""
    from models.cmapss import build_cmapss, engine_windows, fit_cmapss, load_engines
    from models.version import read_version

    started = time.monotonic()
    check_files(config)
    window = WindowSpec(sensors=list(CMAPSS_SENSORS), size=config.window_size, step=config.window_step,
                        feature_set_version=config.feature_set)
    lengths = engine_lengths(config.fleet_path)
    plan = plan_fleet(lengths, devices=config.devices, seed=config.seed, feedback_fraction=config.feedback_fraction,
                      n_engines=config.n_engines(len(lengths)))
    share = label_share(plan, window, config.label_budget)
    settings = _settings(config, plan, window, share)
    workdir = config.workdir.resolve() if config.workdir else Path(tempfile.mkdtemp(prefix="fleetloop-eval-"))
    log.info("%d engines of %s on %d gateways (%d feedback, %d evaluation), %g cycles/s each; technicians label "
             "%.0f%% of each feedback engine's windows; work dir %s", len(plan.engines), config.fleet,
             len(plan.gateways), len(plan.feedback_units), len(plan.evaluation_units), config.rate, 100 * share,
             workdir)
    try:
        with sigterm_as_interrupt():
            v1_dir = workdir / "build" / "v1"
            fleet = load_engines(config.fleet_path)
            regimes = commissioned_regimes(config, plan, fleet, window)
            if not _reusable(v1_dir, window, config.seed, settings.training.base_set, regimes):
                shutil.rmtree(v1_dir, ignore_errors=True)
                log.info("training v1 on %s (the C-MAPSS recipe)", config.train_ref)
                build_cmapss(v1_dir, path=config.train_ref_path, seed=config.seed, window=window,
                             horizon=config.horizon, base_set=settings.training.base_set, regimes=regimes)
            broker = DevBroker(workdir / "broker", devices=[g.device_id for g in plan.gateways])
            broker.start()
            try:
                run = LoopRun(config, plan, settings, share, broker, workdir, v1_dir)
                with ThreadPoolExecutor(1, thread_name_prefix="oracle") as pool:
                    try:
                        run.start()
                        # The oracle needs nothing from the loop: it trains while the fleet replays.
                        oracle_fit = pool.submit(fit_cmapss, fleet, plan.feedback_units, seed=config.seed,
                                                 window=window, horizon=config.horizon, split=(0.8, 0.2, 0.0))
                        run.wait()
                        outcome = run.outcome()
                    finally:
                        run.stop()
                    oracle = oracle_fit.result()
            finally:
                broker.stop()
            log.info("scoring static, loop and oracle models on %d evaluation engines", len(plan.evaluation_units))
            v1_manifest, v1_bytes = read_version(v1_dir)
            loop_manifest, loop_bytes = outcome.pop("loop_model")
            # feature set 2: each model normalises by its own regime statistics (v1's, the loop's: its parent's, or
            # learned from the field; the oracle's)
            data = engine_windows(fleet, plan.evaluation_units, window, config.horizon, v1_manifest.regimes)
            oracle_X = data.X if oracle.regimes is None else \
                engine_windows(fleet, plan.evaluation_units, window, config.horizon, oracle.regimes).X
            loop_X = data.X if loop_manifest.regimes == v1_manifest.regimes else \
                engine_windows(fleet, plan.evaluation_units, window, config.horizon, loop_manifest.regimes).X
            oracle_windows = sum(windows_of(e.cycles, window) for e in plan.engines if e.feedback)
            scores = [
                score_model("static", v1_manifest.version, v1_bytes, v1_manifest.threshold, data.X, data.y,
                            f"trained on {config.train_ref} only"),
                score_model("loop", loop_manifest.version, loop_bytes, loop_manifest.threshold, loop_X, data.y,
                            "what the fleet serves at the end" if loop_manifest.version != v1_manifest.version
                            else "the loop never deployed a model"),
                score_model("oracle", "oracle", oracle.onnx_bytes, oracle.threshold, oracle_X, data.y,
                            f"every window of the {len(plan.feedback_units)} feedback engines labelled "
                            f"({oracle_windows:,} labels)"),
            ]
            outcome["details"].update(label_free_estimate(loop_manifest, loop_bytes, loop_X, scores[1]))
            if config.regimes == "field":
                outcome["details"]["regimes"] = {"from": "field", "v1": v1_manifest.regimes.n_regimes
                                                 if v1_manifest.regimes else None,
                                                 "loop": loop_manifest.regimes.n_regimes if loop_manifest.regimes
                                                 else None}
    finally:
        if not config.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return EvalReport(mode=config.mode, scores=scores, eval_windows=len(data), eval_positives=int(data.y.sum()),
                      wall_s=time.monotonic() - started, **outcome)


def commissioned_regimes(config: EvalConfig, plan: FleetPlan, fleet: Mapping[int, np.ndarray],
                         window: WindowSpec) -> RegimeStats | None:
    """Feature set 2's regime statistics for v1: fitted on the readings of the training file and, unlabelled, of
    the fleet's feedback engines (the operator's commissioning step: the training file may not hold the field's
    operating regimes at all, as FD001 holds one of FD002's six). None for feature set 1."""
    from models.cmapss import engine_regimes, load_engines

    if window.feature_set_version != REGIMES:
        return None
    reference = load_engines(config.train_ref_path)
    feedback = plan.feedback_units if config.regimes == "commissioned" else []  # "field": the hub learns them
    engines = {**{-u: r for u, r in reference.items()}, **{u: fleet[u] for u in feedback}}
    return engine_regimes(engines, sorted(engines), window, config.seed)


def _reusable(v1_dir: Path, window: WindowSpec, seed: int, base_set: str | None,
              regimes: RegimeStats | None) -> bool:
    """A v1 a previous run left in the work dir, made by the same recipe inputs."""
    from models.version import read_version

    if not (v1_dir / "manifest.json").is_file():
        return False
    try:
        manifest, _ = read_version(v1_dir)
    except FleetloopError:
        return False
    same = (manifest.window, manifest.training.seed, manifest.training.params.get("base_set"), manifest.regimes)
    return same == (window, seed, base_set, regimes)


def _settings(config: EvalConfig, plan: FleetPlan, window: WindowSpec, share: float) -> LoopSettings:
    feedback = [e for e in plan.engines if e.feedback]
    expected = sum(len(labelled(windows_of(e.cycles, window), share, label_offset(config.seed, e.unit)))
                   for e in feedback)
    positives = sum(min(windows_of(e.cycles, window), config.horizon // window.step + 1) for e in feedback)
    windows = sum(windows_of(e.cycles, window) for e in feedback)
    mean_cycles = sum(e.cycles for e in plan.engines) / len(plan.engines)
    return loop_settings(config, mean_cycles=mean_cycles, replay_s=max(g.cycles for g in plan.gateways) / config.rate,
                         expected_labels=expected, positive_rate=positives / max(windows, 1),
                         engine_windows=windows_of(round(mean_cycles), window), feedback_engines=len(feedback))


class LoopRun:
    """The running parts of one evaluation; `start`, `wait`, `outcome`, `stop` (always)."""

    def __init__(self, config: EvalConfig, plan: FleetPlan, settings: LoopSettings, share: float,
                 broker: DevBroker, workdir: Path, v1_dir: Path) -> None:
        self.config, self.plan, self.settings, self.broker = config, plan, settings, broker
        self.workdir = workdir
        self.v1_dir = v1_dir
        self.share = share
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.hub: HubService | None = None
        self.api: _Api | None = None
        self.jobs: list[Periodic] = []
        self.desk: Desk | None = None
        self.operator: Operator | None = None
        self.conductor: Conductor | None = None
        self.started = time.time()
        self.clock = ReplayClock(config.rate)
        self.window = WindowSpec(sensors=list(CMAPSS_SENSORS), size=config.window_size, step=config.window_step)
        self._thresholds: dict[str, float] = {}

    def start(self) -> None:
        config, broker = self.config, self.broker
        hub_dir = self.workdir / "hub"
        shutil.rmtree(hub_dir, ignore_errors=True)  # a reused work dir starts a fresh hub and fleet
        shutil.rmtree(self.workdir / "gateways", ignore_errors=True)
        api = self.api = _Api()
        settings = HubSettings(
            dev_mode=True, data_dir=hub_dir, mqtt_host=broker.host, mqtt_port=broker.port, mqtt_username=HUB_USER,
            mqtt_password=SecretStr(broker.password(HUB_USER)), prefix=broker.prefix, share_group="eval",
            ingest_client_id="eval-ingest", artifact_base_url=api.url, drift=self.settings.drift,
            training=self.settings.training, labels=self.settings.labels, rollout_tick_s=0.5,
            trace_request_interval_s=0.5,
            # the random slice's raw windows, asked for as they come: what the hub learns regimes from ("field");
            # not asked for when the regimes were commissioned (nothing reads them)
            raw_window_interval_s=1.0, raw_window_learn_per_pass=500 if config.regimes == "field" else 0,
            raw_window_learn_per_day=100_000,  # a run replays days of a fleet in minutes
        )
        hub = self.hub = HubService(settings, driven=DRIVEN_JOBS if self.settings.milestone else ())
        hub.registry.register(self.v1_dir, actor="operator:eval", status="active",
                              reason=f"C-MAPSS v1 trained on {config.train_ref} only")
        api.start(hub)
        hub.start()
        if not hub.worker.wait_ready(15):
            raise FleetloopError("the hub's ingest worker did not connect to the broker")
        key = hub.key.public_key_text()
        for gateway in self.plan.gateways:
            self.procs[gateway.device_id] = self._launch(gateway.device_id, hub.registry.path("v1"), key)
        self.started = time.time()
        self.desk = Desk(self.plan, self.workdir / "gateways", settings.topics, config.horizon, self.share,
                         config.label_delay, config.seed, clock=self.clock, policy=config.label_policy,
                         threshold_of=self._threshold, regimes=engine_regimes(config.fleet_path))
        self.operator = Operator(hub, self.settings, self.desk, self.plan, config.rate)
        if self.settings.milestone:
            self.conductor = Conductor(
                hub, self.plan, self.desk, self.operator, self.procs, self.workdir / "gateways", self.window,
                step=self.settings.milestone, cooldown=self.settings.cooldown,
                stats_s=float(self.settings.agent["stats_interval_s"]), train_timeout_s=config.timeout_s)
            return
        self.jobs = [Periodic("technicians", 0.25, self.desk.run), Periodic("operator", 0.5, self.operator.run)]
        for job in self.jobs:
            job.start()

    def _threshold(self, version: str) -> float:
        """A registered version's decision threshold (the technicians' desk ranks windows by it)."""
        assert self.hub is not None
        if version not in self._thresholds:
            manifest = self.hub.registry.manifest(version)
            if manifest is None:
                return 0.5
            self._thresholds[version] = manifest.threshold
        return self._thresholds[version]

    def _launch(self, device_id: str, model_dir: Path, key: str) -> subprocess.Popen[bytes]:
        folder = self.workdir / "gateways" / device_id
        replay = write_replay(self.config.fleet_path, self.plan.gateway(device_id), folder / "replay.txt")
        config = {
            "device_id": device_id, "data_dir": str(folder), "prefix": self.broker.prefix,
            "mqtt_host": self.broker.host, "mqtt_port": self.broker.port, "initial_model": str(model_dir),
            "model_public_key": key, **self.settings.agent,
            "source": {"kind": "cmapss", "path": str(replay), "rate": self.config.rate,
                       "start_ts": self.clock.epoch,
                       **({"hold_path": str(folder / "hold")} if self.settings.milestone else {})},
        }
        (folder / "agent.toml").write_text(to_toml(config))
        env = {**os.environ, PASSWORD_ENV: self.broker.password(device_id)}
        cmd = [sys.executable, "-m", "fleetloop.cli", "agent", "run", "--config", str(folder / "agent.toml"),
               "--duration", str(self.config.timeout_s)]
        with (folder / "agent.out").open("wb") as out, (folder / "agent.log").open("ab") as err:
            # its own process group: a terminal's Ctrl-C reaches only us, and we stop the gateways in order
            return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, process_group=0)

    def wait(self) -> None:
        """Until every gateway has replayed its engines (or the timeout), with a progress line now and then."""
        deadline = time.monotonic() + self.config.timeout_s
        next_line = time.monotonic() + self.config.progress_s

        def progress() -> None:
            nonlocal next_line
            if time.monotonic() >= next_line:
                log.info("%s", self.progress_line())
                next_line = time.monotonic() + self.config.progress_s

        if self.conductor is not None:
            self.conductor.run(deadline, progress)
        while any(p.poll() is None for p in self.procs.values()):
            if time.monotonic() > deadline:
                raise FleetloopError(f"the evaluation did not finish within {self.config.timeout_s:.0f} s")
            time.sleep(0.2)
            if time.monotonic() >= next_line:
                log.info("%s", self.progress_line())
                next_line += self.config.progress_s
        failed = {d: p.returncode for d, p in self.procs.items() if p.returncode != 0}
        if failed:
            tail = (self.workdir / "gateways" / next(iter(failed)) / "agent.log").read_text(errors="replace")[-1500:]
            raise FleetloopError(f"gateway(s) exited with errors {failed}; the first one's log ends:\n{tail}")
        log.info("%s", self.progress_line())
        log.info("every gateway has replayed its engines")

    def progress_line(self) -> str:
        assert self.hub is not None and self.desk is not None and self.operator is not None
        positions = [p.position for p in self.desk.progress.values()] or [0]
        total = max(g.cycles for g in self.plan.gateways)
        jobs = self.hub.store.training_jobs(limit=20)
        verdicts = ",".join(f"{j.result_version or '…'}:{j.gate_verdict or j.status}" for j in reversed(jobs)) or "-"
        serving = Counter(d.model_version or "?" for d in self.hub.store.devices())
        return (f"t+{time.time() - self.started:5.1f}s  cycle {min(positions):,}-{max(positions):,}/{total:,}  "
                f"predictions {sum(p.predictions for p in self.desk.progress.values()):,}  labels sent "
                f"{self.desk.sent:,}  retrains {verdicts}  rollouts {self.operator.summary()}  serving "
                + " ".join(f"{v}x{n}" for v, n in sorted(serving.items())))

    def outcome(self) -> dict[str, Any]:
        """The loop's numbers, read from the hub and the gateways' databases before anything stops."""
        from models.version import read_version

        assert self.hub is not None and self.desk is not None and self.operator is not None
        hub, store = self.hub, self.hub.store
        jobs = store.training_jobs(limit=1000)
        used: set[str] = set()
        for job in jobs:
            if job.status == "succeeded" and job.label_set_id:
                used |= {i.trace_id for i in store.label_set_items(job.label_set_id)}
        predictions = sum(self._agent(d, "SELECT count(*) FROM predictions")[0][0] for d in self.procs)
        active = hub.registry.active_version() or "v1"
        deployed = list(self.operator.completed)
        drift = store.events(kind=DRIFT_EVENT, limit=1)
        fleet_cycles = max(g.cycles for g in self.plan.gateways)
        # the hub's own label-free estimate of the serving version, from the random samples it scored
        hub_estimate = next((e for e in estimates_now(store, None, self.settings.training.performance,
                                                      now=time.time())  # messages carry the gateways' wall clock
                             if e.version == active and e.scope == "fleet" and e.status == "ok"), None)
        return {
            "loop_model": read_version(hub.registry.path(active)),
            "predictions": int(predictions), "labels_sent": self.desk.sent, "labels_used": len(used),
            "retrains": sum(j.status == "succeeded" for j in jobs),
            "retrains_passed": sum(j.gate_verdict == "pass" for j in jobs),
            "rollouts_completed": len(deployed),
            "recovery_cycles": self.served_from(deployed[0]) if deployed else None,
            "final_cycles": self.served_from(active) if active != "v1" else None,
            "fleet_cycles": fleet_cycles,
            "drift_cycles": round((drift[0].ts - self.started) * self.config.rate) if drift else None,
            "details": {"devices": len(self.plan.gateways), "engines": len(self.plan.engines),
                        "feedback_engines": len(self.plan.feedback_units), "seed": self.config.seed,
                        "rate": self.config.rate, "label_share_of_feedback_windows": round(self.share, 4),
                        "label_policy": self.config.label_policy, "label_budget": self.config.label_budget,
                        "failures_labelled": len(self.desk.failures), "random_labels": self.desk.random_labels,
                        "lockstep": self.conductor is not None,
                        "milestones": self.conductor.milestones if self.conductor else None,
                        "held_s": round(self.conductor.waited_s, 1) if self.conductor else None,
                        "versions": [f"{j.result_version or '…'}:{j.trigger}:{j.gate_verdict or j.status}"
                                     for j in reversed(jobs)], "deployed": deployed,
                        "hub_estimated_f1": None if hub_estimate is None else hub_estimate.estimated["f1"],
                        "hub_estimate_samples": None if hub_estimate is None else hub_estimate.samples},
        }

    def served_from(self, version: str) -> int | None:
        """The fleet-clock cycle from which every gateway served `version` (None if one never did)."""
        worst = 0
        for gateway in self.plan.gateways:
            rows = self._agent(gateway.device_id, "SELECT window_end FROM predictions WHERE model_version = ? "
                               "ORDER BY id LIMIT 1", version)
            if not rows:
                return None
            worst = max(worst, self.clock.position(float(rows[0][0])))
        return worst

    def _agent(self, device_id: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
        path = self.workdir / "gateways" / device_id / "agent.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        """Gateways first (SIGTERM, then SIGKILL), then technicians and operator, the hub and its API."""
        live = [p for p in self.procs.values() if p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        try:
            for proc in live:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        except KeyboardInterrupt:
            for proc in live:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            raise
        finally:
            for job in self.jobs:
                job.stop()
            if self.desk is not None:
                self.desk.close()
            if self.hub is not None:
                self.hub.stop()
            if self.api is not None:
                self.api.stop()


class _Api:
    """The hub's HTTP API on a free loopback port, served by uvicorn in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def start(self, hub: HubService) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(hub.app(), lifespan="off", ws="none", log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="eval-api",
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise FleetloopError("the hub API did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        self.sock.close()


__all__ = ["LoopRun", "Operator", "check_files", "run_eval"]

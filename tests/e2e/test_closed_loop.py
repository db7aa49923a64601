"""The closed loop with real parts: eight agent processes, mosquitto, the hub (`HubService` + its API over HTTP).

Every device simulates its own machine; at step 1000 the simulator recalibrates two sensors badly (vibration
reads 2 mm/s low, temperature 4 °C high) on every machine. The hub's drift job sees it in the agents' stats,
simulated technicians label the fleet from the simulator's ground truth as people do, on the paths people use: the
hub's labelling queue over HTTP with a technician token (``GET /queue``, ``POST /annotations/batch``), 60 items
per site and machine-hour, wrong 3 % and 5 % of the time; and on site a maintenance log, failures and inspections
as time ranges with a person's noise (`sim.maintenance`), recorded in each agent's own database and sent by the
agent over MQTT (`fleetloop agent annotate`'s path; the hub asks the devices for the windows the ranges cover).
The hub's trigger job starts a retrain on drift once enough labels exist, the gate passes the candidate (a
candidate the gate blocks by chance is retrained on more labels: by the hub itself after insufficient_data, by an
operator after a fail), and an operator rolls it out through the API: one canary device, then the fleet, every
device fetching the signed artifact from the hub over HTTP.
Then two candidates that must never reach the fleet: one that passes the gate but gives NaN on devices (rolled
back automatically during its canary), and one trained on flipped labels (rejected by the gate, refused).

Test settings that differ from production, and why (numbers from offline runs of the same fleet):

- the recalibration is harsher than tests/hub/training's (vibration -1 mm/s only): from 30 s of 8 machines the
  candidate's gain must dwarf run-to-run noise, and this drift costs v1 about 0.2-0.3 of its recall. The label
  rate is a plant's: a handful of log entries per machine-hour and the queue's budget; the entries cover about
  half the windows (a failure's last 100 readings, the healthy stretches inspections vouch for), the agents
  sample the product's 1 %;
- the retrain waits for `MIN_LABELS` validated labels (product: 200 new, 500 in all), about what the log and the
  queue give by 1,500 steps after the recalibration, so the candidate has seen the drift;
- drift is judged over 15 s of stats, every 2 s (a day, every hour, in production), at the product's PSI
  threshold (0.2) and sample minimum (200 windows a scope: one device sends 300 in 15 s). v1's drift reference
  is the product's re-take (``POST /drift/reference`` by an operator, each device and cohort with its own
  baseline) from the fleet's healthy traffic before the recalibration: eight machines are not the thirty the
  recipe trained on, and against the recipe's reference their fleet reads as drifted before anything is
  injected;
- a p99 latency budget of 1 s (20 ms): eight agent processes and the hub share two cores, so a window may
  wait for one (a gateway has its own core);
- evaluation blocks of 2 s (200 readings, twice the model's failure horizon) instead of an hour: the gate
  resamples blocks, not windows, and needs 10 with a failure; 30 s of 8 machines give ~120 blocks.

The hub runs in production mode (broker password and ACL, a provisioned signing key the agents pin, API tokens).
The gate's tolerances, block minimums and the rollout health limits are the product's defaults: the rollout
judges the fix against its own reference because the control (v1, on the other devices) drifted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from fleetloop.devbroker import HUB_USER, DevBroker
from fleetloop.devfleet import new_tokens
from fleetloop.story.faults import nan_onnx
from fleetloop.technicians import technician_desk
from hub.app.service import HubService, Periodic
from hub.app.settings import DriftSettings, HubSettings
from hub.registry.signing import SigningKey
from hub.rollout.settings import HealthLimitsSettings
from hub.store.rows import DRIFT_EVENT
from hub.training.service import TrainingService
from hub.training.settings import TrainingSettings
from hub.training.triggers import TriggerPolicy
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, sha256_bytes
from shared.wire import to_json_data
from sim.dataset import default_fleet
from sim.desk import TechnicianDesk
from sim.drift import SensorOffset
from sim.technicians import SimDevice
from tests.fixtures.broker import Collector, barrier, barrier_topic, close_client, connect_to, subscribe

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

RATE = 100.0  # readings per second per device
DRIFT_AT = 1500  # step of the bad recalibration: 15 s into every device's run (~290 windows each before it)
DRIFTS = (SensorOffset(sensor="vibration", offset=-2.0, start_t=DRIFT_AT),
          SensorOffset(sensor="temperature", offset=4.0, start_t=DRIFT_AT))
DEVICES = [f"dev-{i}" for i in range(8)]  # pumps, compressors and fans in turn (default_fleet)
CANARY, NAN_CANARY = "dev-0", "dev-5"
NAN_VERSION = "nan-1"
MIN_LABELS = 2400  # what the log and the queue give ~1,800 steps after the drift (~45 % of the windows by then)
TRAINING = TrainingSettings(
    split_block_s=2.0, latency_runs=200, check_interval_s=1.0,
    triggers=TriggerPolicy(min_new_labels=MIN_LABELS, min_total_labels=MIN_LABELS, cooldown_s=3600.0,
                           schedule_interval_s=None),
)
DRIFT = DriftSettings(window_s=15.0, interval_s=2.0)  # the product's threshold, sample minimum and test
LIMITS = HealthLimitsSettings(latency_p99_ms=1000)  # eight agents and the hub share two cores (a gateway: its own)
POLICIES = {"canary": {"min_duration_s": 3, "min_windows": 40, "timeout_s": 60},
            "fleet": {"min_duration_s": 2, "min_windows": 20, "timeout_s": 60}}



# --- the fleet --------------------------------------------------------------------------------------------------
def fleet(start_ts: float) -> dict[str, SimDevice]:
    configs = default_fleet()
    return {d: SimDevice(d, seed=i + 1, config=configs[i % len(configs)], drifts=DRIFTS, start_ts=start_ts, rate=RATE)
            for i, d in enumerate(DEVICES)}


def agent_process(root: Path, broker: DevBroker, device: SimDevice, model_dir: Path,
                  key: str) -> subprocess.Popen[bytes]:
    config = {
        "device_id": device.device_id, "data_dir": str(root / device.device_id), "mqtt_host": broker.host,
        "mqtt_port": broker.port, "initial_model": str(model_dir), "model_public_key": key,
        "site": device.config.site, "asset_type": device.config.asset_type, "stats_interval_s": 1.0,
        "commit_interval_s": 0.05, "health_windows": 10, "fetch_retry_s": 1.0,
        "source": {"kind": "sim", "rate": RATE, "seed": device.seed, "start_ts": device.start_ts,
                   "sim_config": to_json_data(device.config),
                   "drifts": [to_json_data(d) for d in device.drifts]},
    }
    path = root / f"{device.device_id}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "FLEETLOOP_AGENT_MQTT_PASSWORD": broker.password(device.device_id)}
    with (root / f"{device.device_id}.log").open("w") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "fleetloop.cli", "agent", "run", "--config", str(path)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def agent_rows(root: Path, device: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read an agent's SQLite file read-only while the agent runs (WAL)."""
    conn = sqlite3.connect(f"file:{root / device / 'agent.db'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def stopped(proc: subprocess.Popen[bytes]) -> int | None:
    """An agent's exit code after SIGTERM (it drains its outbox first); killed, and None, if it hangs."""
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


# --- the technicians --------------------------------------------------------------------------------------------
# `fleetloop.technicians`: two at the hub's queue (GET /queue, POST /annotations/batch with a technician token), one
# per site, on a budget, and one on site keeping a maintenance log of time ranges through each agent's own annotate
# path (its database and outbox, published over MQTT by the running agent); the hub asks the devices for the
# windows those ranges cover and labels them.


# --- the hub ----------------------------------------------------------------------------------------------------
@dataclass
class Loop:
    hub: HubService
    api: httpx.Client
    root: Path
    devices: dict[str, SimDevice]
    desk: TechnicianDesk
    started: float = field(default_factory=time.time)

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnose()}")
            time.sleep(0.2)
        return time.time()

    def serving(self) -> dict[str, str | None]:
        return {d.device_id: d.model_version for d in self.hub.store.devices()}

    def events(self, device: str, event: str, version: str) -> list[float]:
        return [e.received_at for e in self.hub.store.model_events(device_id=device)
                if e.event == event and e.version == version]

    def agent_versions(self, device: str, since_ts: float = 0.0) -> set[str]:
        rows = agent_rows(self.root, device, "SELECT DISTINCT model_version FROM predictions WHERE ts > ?", since_ts)
        return {r[0] for r in rows}

    def diagnose(self) -> str:
        """Everything that helps to see where the loop stopped: hub state, then each agent's log tail."""
        store = self.hub.store
        jobs = [(j.id[:8], j.status, j.stage, j.trigger, j.result_version, j.gate_verdict, j.error)
                for j in store.training_jobs(limit=5)]
        gates = {v.version: (v.status, (v.gate or {}).get("reasons")) for v in store.model_versions(limit=10)}
        rollouts = [(r.id, r.candidate, r.status, (r.decision or {}).get("reason")) for r in store.rollouts(limit=5)]
        drift = [(r.scope, r.verdict, round(r.ts - self.started, 1), r.report.get("drifted_features", [])[:3])
                 for r in store.drift_reports(limit=6)]
        lines = [f"t+{time.time() - self.started:.1f} s", f"serving: {self.serving()}", f"jobs: {jobs}",
                 f"versions: {gates}", f"rollouts: {rollouts}", f"drift (newest first): {drift}",
                 f"desk: {self.desk.tally}", f"counts: {store.counts()}"]
        for d in self.devices:
            path = self.root / f"{d}.log"
            lines.append(f"--- {d}\n" + (path.read_text()[-1200:] if path.exists() else "(no log)"))
        return "\n".join(lines)


@pytest.fixture
def loop(tmp_path: Path, fresh_broker: DevBroker, initial_model_dir: Path) -> Iterator[Loop]:
    start_ts = float(math.floor(time.time()))
    devices = fleet(start_ts)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    key_file = tmp_path / "keys" / "signing.pem"  # provisioned before the hub starts: it never makes one itself
    key_file.parent.mkdir()
    SigningKey.create(key_file)
    tokens = new_tokens()
    settings = HubSettings(
        data_dir=tmp_path / "hub", mqtt_host=fresh_broker.host, mqtt_port=fresh_broker.port,
        mqtt_username=HUB_USER, mqtt_password=SecretStr(fresh_broker.password(HUB_USER)),
        ingest_client_id="loop-ingest", artifact_base_url=url, signing_key_file=key_file,
        tokens={token: role for role, token in tokens.items()}, drift=DRIFT, training=TRAINING, rollout_tick_s=0.5,
        trace_request_interval_s=1.0, rollout_limits=LIMITS,
    )
    assert not settings.dev_mode
    hub = HubService(settings)
    shutil.copytree(initial_model_dir, tmp_path / "v1")
    hub.registry.register(tmp_path / "v1", actor="operator:ana", reason="initial model", status="active")
    server = uvicorn.Server(uvicorn.Config(hub.app(), lifespan="off", ws="none", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the hub API did not start"
        time.sleep(0.01)
    hub.start()
    assert hub.worker.wait_ready(10)
    v1 = hub.registry.manifest("v1")
    assert v1 is not None
    desk, inbox, machines = technician_desk(
        devices, hub_url=url, token=tokens["technician"], agents_dir=tmp_path, prefix=fresh_broker.prefix,
        horizon=int(v1.training.params["horizon"] or 0), since=time.time())
    technicians = Periodic("technicians", 0.5, desk.run)
    technicians.start()
    key = hub.key.public_key_text()
    procs = [agent_process(tmp_path, fresh_broker, d, hub.registry.path("v1"), key) for d in devices.values()]
    api = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {tokens['operator']}"})
    try:
        yield Loop(hub, api, tmp_path, devices, desk)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [stopped(proc) for proc in procs]
        technicians.stop()
        inbox.close()
        machines.close()
        api.close()
        server.should_exit = True
        thread.join(10)
        sock.close()
        hub.stop()
    assert codes == [0] * len(procs)
    assert technicians.failures == 0 and all(job.failures == 0 for job in hub.jobs)


RETRAIN_ATTEMPTS = 3  # drift-fix candidates the gate may judge before the test gives up (the demo's number)


def retrain_until_judged_pass(loop: Loop, job_id: str) -> tuple[Any, dict[str, str]]:
    """Follow retrains from `job_id` until the gate passes one, at most `RETRAIN_ATTEMPTS` candidates: an
    insufficient_data one is retried by the hub's trigger once a quarter more labels are validated; after a fail,
    an operator asks for a retrain through the API once a quarter more labels are in. Returns the last job and
    the blocked candidates (version: verdict)."""
    store = loop.hub.store
    blocked: dict[str, str] = {}
    for attempt in range(1, RETRAIN_ATTEMPTS + 1):
        loop.wait(lambda: (j := store.training_job(job_id)) is not None  # noqa: B023 (called at once)
                  and j.status in ("succeeded", "failed"), f"retrain {attempt}", 60)
        job = store.training_job(job_id)
        assert job is not None and job.status == "succeeded", loop.diagnose()
        if job.gate_verdict == "pass" or attempt == RETRAIN_ATTEMPTS:
            break
        version = job.result_version or ""
        blocked[version] = job.gate_verdict or ""
        log.info("retrain %d: %s %s: %s", attempt, version, job.gate_verdict,
                 (loop.hub.registry.get(version).gate or {}).get("reasons"))
        if job.gate_verdict == "insufficient_data":
            loop.wait(lambda: store.training_jobs(limit=1)[0].id != job_id, "the hub's retry", 60)  # noqa: B023
            retry = store.training_jobs(limit=1)[0]
            assert (retry.trigger, retry.actor) == ("drift", "hub:triggers"), loop.diagnose()
            job_id = retry.id
            continue
        want = int(loop.desk.tally.annotations * 1.25)
        loop.wait(lambda: loop.desk.tally.annotations >= want, f"{want} annotations", 60)  # noqa: B023
        queued = loop.api.post("/retrain", json={"reason": f"{version} blocked by the gate: more labels",
                                                 "actor": "ana"})
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["job_id"]
    return job, blocked


def injected_at(loop: Loop) -> float:
    """When the first device scored a window reaching into the recalibration (inf: none yet)."""
    return min(agent_rows(loop.root, d, "SELECT min(ts) FROM predictions WHERE window_end >= ?",
                          loop.devices[d].ts_of(DRIFT_AT))[0][0] or math.inf for d in DEVICES)


def test_drift_retrain_gate_rollout_and_two_candidates_that_never_reach_the_fleet(loop: Loop) -> None:
    hub, store = loop.hub, loop.hub.store
    loop.wait(lambda: loop.serving() == dict.fromkeys(DEVICES, "v1"), "eight agents serving v1", 30)
    t_online = time.time()

    # 1. The operator re-takes v1's drift reference from the fleet's traffic before the recalibration, through the
    # API (audited), each device with its own baseline; against it the fleet drifts on the recalibrated sensors.
    loop.wait(lambda: injected_at(loop) < math.inf, "the recalibration", 40)
    injected = injected_at(loop)
    taken = loop.api.post("/drift/reference", json={
        "version": "v1", "start": loop.started, "end": injected, "device_baselines": True, "actor": "ana",
        "reason": "commissioning: the fleet's healthy traffic before the recalibration"})
    assert taken.status_code == 201, taken.text
    reference = taken.json()
    assert reference["device_baselines"] and set(reference["summary"]["devices_windows"]) == set(DEVICES)
    audit = [a for a in store.model_audit(version="v1") if a.action == "drift_reference"]
    assert [(a.actor, a.details["reference_id"]) for a in audit] == [("operator:ana", reference["id"])]

    def judged(scope: str) -> list[Any]:  # reports against the re-taken reference, oldest first
        return [r for r in reversed(store.drift_reports(limit=10_000, scope=scope))
                if r.report.get("reference", {}).get("id") == reference["id"]]

    def fleet_drift() -> list[dict[str, Any]]:  # on the recalibrated sensors (the scores may shift first)
        ids = {r.id for r in judged("fleet@v1") if r.verdict == "drift"}
        return [e.payload for e in store.events(kind=DRIFT_EVENT, limit=100_000) if e.payload["report_id"] in ids
                and {f.split(".")[0] for f in e.payload["drifted_features"]} & {"vibration", "temperature"}]

    t_drift = loop.wait(lambda: fleet_drift() != [], "a fleet-wide drift_detected event on the recalibration", 40)
    event = fleet_drift()[0]
    # every device was recalibrated: each is located, against its own baseline, on the recalibrated sensors
    def located(d: str) -> bool:
        return any(r.verdict == "drift" and r.report["reference"]["source"] == "device"
                   and {f.split(".")[0] for f in r.report["drifted_features"]} & {"vibration", "temperature"}
                   for r in judged(f"device:{d}@v1"))

    loop.wait(lambda: all(located(d) for d in DEVICES), "every device located on the recalibrated sensors", 30)

    # 2. Labels → the hub's own trigger job retrains on drift → the gate passes the candidate. The gate judges a
    # slice of ~150 failure windows, so a fix can be blocked by chance (too few failure blocks: insufficient_data;
    # a false-alarm rise the recall gain cannot surely pay for: fail). The product's answer is more labels: the hub
    # retries an unjudged retrain on its own, an operator retrains a blocked one through the API (as in the demo).
    loop.wait(lambda: store.training_jobs(limit=1) != [], "the triggered retrain", 60)
    (first,) = store.training_jobs(limit=1)
    assert (first.trigger, first.actor) == ("drift", "hub:triggers"), loop.diagnose()
    job, blocked = retrain_until_judged_pass(loop, first.id)
    assert (job.status, job.gate_verdict) == ("succeeded", "pass"), loop.diagnose()
    v2 = job.result_version or ""
    row = hub.registry.get(v2)
    gate = row.gate or {}
    cand, inc = gate["candidate"], gate["incumbent"]
    assert row.status == "candidate" and row.parent_version == "v1" and gate["passed"]
    floor = gate["far_floor"]  # v1 drifted fleet-wide: false alarms measured from its rate before, where higher
    assert floor is not None and floor["version"] == "v1", gate
    assert cand["recall"] > inc["recall"] and (cand["n_pos"], cand["n_neg"]) == (inc["n_pos"], inc["n_neg"])
    labelled = store.predictions_by_trace([i.trace_id for i in store.label_set_items(job.label_set_id or "")])
    assert len(labelled) >= MIN_LABELS
    assert hub.registry.manifest(v2).training.data_kind == "mixed"  # type: ignore[union-attr]
    asked = hub.traces.ranges_requested  # the log's ranges cover windows only the devices had: the hub asked for them
    assert asked > 0 and any(p.reason == "requested" for p in labelled)

    # 3. An operator rolls it out through the API: one canary device, then the fleet.
    body = {"candidate": v2, "canary": [CANARY], "reason": "recalibrated sensors fleet-wide", "actor": "ana",
            "policies": POLICIES}
    started = loop.api.post("/rollouts", json=body)
    assert started.status_code == 201, started.text
    rollout_id = started.json()["id"]
    assert [s["name"] for s in started.json()["stages"]] == ["canary", "fleet"]
    loop.wait(lambda: hub.rollouts.get(rollout_id).state.stage == "fleet", "the canary to pass", 40)
    advanced = hub.rollouts.get(rollout_id).state.entered_at
    assert loop.events(CANARY, "swapped", v2) and loop.events(CANARY, "health_ok", v2)
    assert all(t >= advanced for d in DEVICES if d != CANARY for t in loop.events(d, "swapped", v2))
    # The rollout's state is stored before the registry moves (then the devices): wait for both.
    t_done = loop.wait(lambda: hub.rollouts.get(rollout_id).state.status == "completed"
                       and (hub.registry.get(v2).status, hub.registry.get("v1").status) == ("active", "retired"),
                       "the rollout to complete", 40)
    loop.wait(lambda: loop.serving() == dict.fromkeys(DEVICES, v2)  # the events travel apart: wait for each
              and all(loop.events(d, "swapped", v2) and loop.events(d, "health_ok", v2) for d in DEVICES),
              "every device serving v2", 20)
    assert hub.registry.active_version() == v2
    swapped = {d: max(loop.events(d, "swapped", v2)) for d in DEVICES}

    def scored_after_swap(d: str) -> set[str | None]:  # traces the hub asked for keep the version that scored them
        return {p.model_version for p in store.predictions(swapped[d] + 1, 1e12, device_ids=[d])
                if p.reason != "requested"}

    loop.wait(lambda: all(scored_after_swap(d) for d in DEVICES), "predictions after the swap", 20)
    for d in DEVICES:
        assert scored_after_swap(d) == {v2}, d
        assert loop.agent_versions(d, swapped[d] + 1) == {v2}, d

    # 4. A sabotaged retrain (flipped labels): rejected by the gate, refused by rollouts, never on a device.
    sabotage = TrainingService(store, hub.registry, TRAINING, labels=hub.settings.labels,
                               staging_dir=loop.root / "sabotage", label_transform=lambda y: 1 - y)
    bad = sabotage.retrain_now(actor="test", reason="flipped labels", now=time.time())
    bad_version = bad.result_version or ""
    assert (bad.status, bad.gate_verdict, hub.registry.get(bad_version).status) == ("succeeded", "fail", "rejected")
    refused = loop.api.post("/rollouts", json={**body, "candidate": bad_version})
    assert refused.status_code == 409 and "rejected" in refused.text, refused.text

    # 5. A candidate that passes on the hub but gives NaN on devices. The gate would catch NaN scores on the hub,
    # so it is registered as a candidate directly: it stands for a model that only misbehaves on the gateways'
    # runtime. The canary's health check fails, the hub rolls back, the rest of the fleet never gets it.
    nan_dir = loop.root / NAN_VERSION
    shutil.copytree(hub.registry.path(v2), nan_dir)
    (nan_dir / SIGNATURE_FILE).unlink()
    manifest = json.loads((nan_dir / MANIFEST_FILE).read_text())
    onnx = nan_onnx(len(manifest["feature_names"]))
    (nan_dir / MODEL_FILE).write_bytes(onnx)
    manifest.update(version=NAN_VERSION, parent_version=v2, onnx_sha256=sha256_bytes(onnx))
    (nan_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    hub.registry.register(nan_dir, actor="test", reason="passes on the hub, NaN on gateways", status="candidate")
    hub.registry.skip_gate(NAN_VERSION, actor="test", reason="made by hand to break on the gateways' runtime")
    assigned = Collector()  # every assignment the hub publishes from here on, as the broker delivers them
    watcher = connect_to(hub.settings.mqtt_host, hub.settings.mqtt_port, HUB_USER, hub.settings.password or "",
                         collector=assigned)
    subscribe(watcher, "fleetloop/+/model/assign")
    subscribe(watcher, marker := barrier_topic())
    nan_start = loop.api.post("/rollouts", json={**body, "candidate": NAN_VERSION, "canary": [NAN_CANARY]})
    assert nan_start.status_code == 201, nan_start.text
    nan_id = nan_start.json()["id"]
    loop.wait(lambda: hub.rollouts.get(nan_id).state.status == "rolled_back"
              and hub.registry.get(NAN_VERSION).status == "rolled_back", "the NaN canary to roll back", 40)
    assert hub.rollouts.get(nan_id).state.stage == "canary"
    assert loop.events(NAN_CANARY, "health_failed", NAN_VERSION), loop.diagnose()
    served = agent_rows(loop.root, NAN_CANARY, "SELECT count(*), count(score) FROM predictions WHERE model_version = ?",
                        NAN_VERSION)
    assert served[0][0] >= 1 and served[0][1] == 0, served  # it did serve the canary: windows without a score
    assert (hub.registry.get(NAN_VERSION).status, hub.registry.active_version()) == ("rolled_back", v2)
    loop.wait(lambda: loop.serving() == dict.fromkeys(DEVICES, v2), "every device back on v2", 20)
    # A barrier through the hub's own connection: every assignment it published before has reached the watcher.
    nan_assigned = {m.topic for m in barrier(hub.commands.client, marker, assigned)
                    if not m.retain and m.payload and json.loads(m.payload)["version"] == NAN_VERSION}
    close_client(watcher)
    assert nan_assigned == {f"fleetloop/{NAN_CANARY}/model/assign"}, nan_assigned
    for d in DEVICES:
        if d != NAN_CANARY:
            assert not [e for e in store.model_events(device_id=d) if e.version == NAN_VERSION], d
            assert NAN_VERSION not in loop.agent_versions(d), d
        assert bad_version not in loop.agent_versions(d) and not [
            e for e in store.model_events(device_id=d) if e.version == bad_version], d

    for version, verdict in blocked.items():  # drift fixes the gate kept from the fleet
        assert hub.registry.get(version).status == {"fail": "rejected"}.get(verdict, verdict)
        assert not any(version in loop.agent_versions(d) for d in DEVICES), version
    post_drift = sum(1 for p in labelled if p.window_end >= loop.devices[p.device_id].ts_of(DRIFT_AT))
    scored = sum(agent_rows(loop.root, d, "SELECT count(*) FROM predictions WHERE ts <= ?", job.created_ts)[0][0]
                 for d in DEVICES)  # the label rate: of the windows scored when the retrain started
    log.info("label rate: %d labels of %d windows (%.1f %%), %.0f labels per device-hour (%d windows an hour)",
             len(labelled), scored, 100 * len(labelled) / scored, len(labelled) / (scored * 5 / 3600), 3600 // 5)
    log.info("closed loop: agents online at t+%.1f s; recalibration injected at t+%.1f s, drift event at t+%.1f s "
             "(%s); retrain %s triggered at t+%.1f s on %d labels (%d after the drift, %d ranges asked from devices; "
             "blocked before: %s), "
             "ran %.1f s; gate on %d+/%d-: candidate recall %.3f FAR %.4f, incumbent recall %.3f FAR %.4f, "
             "candidate p99 %.2f ms; "
             "v1's false alarms before the drift (the gate's floor) %s on %s windows; "
             "canary passed at t+%.1f s, fleet recovered at t+%.1f s: %.1f s after the injection; sabotaged %s: %s",
             t_online - loop.started, injected - loop.started, t_drift - loop.started,
             ", ".join(event["drifted_features"][:4]), v2, job.created_ts - loop.started, len(labelled), post_drift,
             asked, blocked or "none", (job.finished_ts or 0) - (job.started_ts or 0), cand["n_pos"], cand["n_neg"],
             cand["recall"], cand["false_alarm_rate"], inc["recall"], inc["false_alarm_rate"], gate["latency_p99_ms"],
             {k: round(v, 4) for k, v in [("overall", floor["overall"]), *floor["cohorts"].items()] if v is not None},
             floor["negatives"], advanced - loop.started, t_done - loop.started, t_done - injected, bad_version,
             "; ".join((hub.registry.get(bad_version).gate or {}).get("reasons", [])))
    for name, c in sorted(gate["candidate_cohorts"].items()):
        i = gate["incumbent_cohorts"][name]
        log.info("cohort %s (%d+/%d-): candidate recall %.3f FAR %.4f, incumbent recall %.3f FAR %.4f",
                 name, c["n_pos"], c["n_neg"], c["recall"], c["false_alarm_rate"], i["recall"], i["false_alarm_rate"])

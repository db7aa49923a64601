"""The loop's last step for real: three agent processes, a hub (ingest, store, registry, rollouts) and mosquitto.

A signed v2 goes to one canary device, then the fleet; every device fetches it (``file://`` from the registry),
verifies it against the pinned key, swaps it in and reports it; predictions after the swap carry v2. Then an
operator rolls back from the fleet stage and every device serves v1 again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from fleetloop.devbroker import DevBroker
from hub.app.service import Periodic
from hub.app.settings import HubSettings
from hub.mqtt.ingest import IngestWorker
from hub.mqtt.publisher import CommandPublisher
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.rollout import HealthLimits, StagePolicy
from hub.rollout.service import RolloutService
from hub.store import open_store
from hub.store.sqlite import SqliteHubStore
from shared.codec import decode
from shared.messages import Assign
from tests.fixtures.broker import HUB_USER, Clients, Collector, subscribe
from tests.hub.rollout.factories import passed_gate
from tests.hub.rollout.test_service import variant

pytestmark = pytest.mark.slow

DEVICES = ["dev-0", "dev-1", "dev-2"]
CANARY = "dev-0"
POLICIES = {
    "canary": StagePolicy(min_duration_s=3, min_windows=40, timeout_s=90),
    "fleet": StagePolicy(min_duration_s=600, min_windows=40, timeout_s=900),  # stays open for the rollback
}
# Three simulated machines at different ages: anomaly rates legitimately differ a lot, so the rate and PSI
# comparisons are loosened; the point here is the wiring, tests/hub/rollout the judgement. Rates are compared on
# 400 windows at least (the product's default is 500): on 40, half a second of one machine's end of life (20 alarms
# in 40 windows against none on the control) rolled the fleet stage back.
LIMITS = HealthLimits(latency_p99_ms=200, min_rate_windows=400, anomaly_rate_factor=50, rollback_anomaly_factor=100,
                      max_score_psi=50)


def agent_process(tmp_path: Path, broker: DevBroker, device: str, model_dir: Path, public_key: str,
                  seed: int) -> subprocess.Popen[bytes]:
    config = tmp_path / f"{device}.toml"
    config.write_text(
        f'device_id = "{device}"\ndev_mode = true\ndata_dir = "{tmp_path / device}"\nmqtt_host = "{broker.host}"\n'
        f'mqtt_port = {broker.port}\ninitial_model = "{model_dir}"\nmodel_public_key = "{public_key}"\n'
        f'site = "site-{seed % 2}"\nstats_interval_s = 1.0\ncommit_interval_s = 0.05\nsample_rate = 0.2\n'
        f'health_windows = 20\n[source]\nkind = "sim"\nrate = 200\nseed = {seed}\n'
        f'sim_config = {{ life_steps = [400, 800], degradation_tau = [60.0, 120.0] }}\n'
    )
    env = {**os.environ, "FLEETLOOP_AGENT_MQTT_PASSWORD": broker.password(device)}
    log = (tmp_path / f"{device}.log").open("w")
    with log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "fleetloop.cli", "agent", "run", "--config", str(config)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


@dataclass
class Hub:
    store: SqliteHubStore
    registry: Registry
    service: RolloutService
    tmp_path: Path
    assigned: Collector  # every assignment the broker delivers, in the order the hub published them

    def assigns(self, device: str, version: str) -> list[Assign]:
        """The live (not retained) assignments of `version` published to `device`, in order."""
        got = [decode(Assign, m.payload) for m in self.assigned.messages
               if m.topic == f"fleetloop/{device}/model/assign" and not m.retain and m.payload]
        return [a for a in got if a.version == version]

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {d}\n" + (self.tmp_path / f"{d}.log").read_text()[-1500:] for d in DEVICES)
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.2)

    def serving(self) -> dict[str, str | None]:
        return {d.device_id: d.model_version for d in self.store.devices()}

    def events(self, device: str, event: str, version: str) -> list[float]:
        """Hub receive times of this device's `event` about `version`."""
        return [e.received_at for e in self.store.model_events(device_id=device)
                if e.event == event and e.version == version]


@pytest.fixture
def hub(tmp_path: Path, fresh_broker: DevBroker, initial_model_dir: Path, mqtt_clients: Clients) -> Iterator[Hub]:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    assert isinstance(store, SqliteHubStore)
    registry = Registry(store, tmp_path / "registry", SigningKey.generate())
    registry.register(initial_model_dir, actor="operator:ana", reason="bootstrap", status="active")
    registry.register(variant(initial_model_dir, tmp_path / "v2", "v2"), actor="hub:retrain", reason="drift")
    passed_gate(registry, "v2")
    password = fresh_broker.password(HUB_USER)
    worker = IngestWorker(host=fresh_broker.host, port=fresh_broker.port, username=HUB_USER, password=password,
                          store=store, share_group="e2e", client_id="e2e-ingest", batch_size=200)
    worker.start()
    assert worker.wait_ready(10)
    settings = HubSettings(dev_mode=True, mqtt_host=fresh_broker.host, mqtt_port=fresh_broker.port,
                           mqtt_username=HUB_USER, mqtt_password=SecretStr(password))
    publisher = CommandPublisher(settings, client_id="e2e-rollouts")
    publisher.start()
    service = RolloutService(store, registry, publisher, artifact_url=lambda v: registry.path(v).as_uri(),
                             policies=POLICIES, limits=LIMITS)
    assigned = Collector()
    subscribe(mqtt_clients.connect(fresh_broker, HUB_USER, collector=assigned), "fleetloop/+/model/assign")
    ticker = Periodic("rollouts", 0.5, service.tick)
    ticker.start()
    try:
        yield Hub(store, registry, service, tmp_path, assigned)
    finally:
        ticker.stop()
        publisher.stop()
        worker.stop()
        store.close()
    assert ticker.failures == 0


def test_canary_then_fleet_then_operator_rollback(tmp_path: Path, fresh_broker: DevBroker, hub: Hub) -> None:
    key_text = hub.registry.key.public_key_text()
    procs = [agent_process(tmp_path, fresh_broker, d, hub.registry.path("v1"), key_text, seed=20 + i)
             for i, d in enumerate(DEVICES)]
    try:
        _run(hub)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
    assert [p.returncode for p in procs] == [0, 0, 0]


def _run(hub: Hub) -> None:
    store = hub.store
    hub.wait(lambda: hub.serving() == dict.fromkeys(DEVICES, "v1")
             and all(store.stats_between(0, 1e12, device_ids=[d]) for d in DEVICES), "three agents serving v1")

    rollout = hub.service.start("v2", actor="operator:ana", reason="drift at site-1", canary=[CANARY])
    assert [s.name for s in rollout.plan.stages] == ["canary", "fleet"]
    hub.wait(lambda: hub.service.get(rollout.id).state.stage == "fleet", "the canary to pass", timeout=90)
    advanced_at = hub.service.get(rollout.id).state.entered_at
    assert hub.events(CANARY, "swapped", "v2") and hub.events(CANARY, "health_ok", "v2")

    hub.wait(lambda: hub.serving() == dict.fromkeys(DEVICES, "v2")
             and all(hub.events(d, "health_ok", "v2") for d in DEVICES), "every device serving v2")
    # Only the canary first: what the hub published to each device (stamped when it signed it), not when it heard.
    # Waiting for one per device: a device with none would make the checks below vacuous (and fails here).
    hub.assigned.wait_for(lambda _: all(hub.assigns(d, "v2") for d in DEVICES), timeout=10)
    sent = {d: [a.ts for a in hub.assigns(d, "v2")] for d in DEVICES}
    assert sent[CANARY][0] < advanced_at, (sent, advanced_at)
    for device in DEVICES[1:]:  # nothing went to the rest of the fleet before the canary passed
        assert min(sent[device]) >= advanced_at, (device, sent[device], advanced_at)
    swapped = {d: max(hub.events(d, "swapped", "v2")) for d in DEVICES}
    hub.wait(lambda: all(len(store.predictions(swapped[d] + 1, 1e12, device_ids=[d])) >= 5 for d in DEVICES),
             "predictions after the swap")
    for device in DEVICES:
        after = store.predictions(swapped[device] + 1, 1e12, device_ids=[device])
        assert {p.model_version for p in after} == {"v2"}, device
        assert any(s.model_version == "v2" and s.windows for s in store.stats_between(0, 1e12, device_ids=[device]))
    assert hub.registry.get("v2").status == "canary"
    assert hub.service.get(rollout.id).state.status == "running"

    back = hub.service.rollback(rollout.id, actor="operator:bo", reason="complaints from site-1")
    assert back.state.status == "rolled_back"
    hub.wait(lambda: hub.serving() == dict.fromkeys(DEVICES, "v1"), "every device back on v1")
    hub.wait(lambda: all(hub.events(d, "rolled_back", "v2") for d in DEVICES), "the devices' rollback events")
    back_at = {d: max(hub.events(d, "rolled_back", "v2")) for d in DEVICES}
    hub.wait(lambda: all(store.predictions(back_at[d] + 1, 1e12, device_ids=[d]) for d in DEVICES),
             "predictions after the rollback")
    for device in DEVICES:
        assert {p.model_version for p in store.predictions(back_at[device] + 1, 1e12, device_ids=[device])} == {"v1"}
    assert (hub.registry.get("v2").status, hub.registry.active_version()) == ("rolled_back", "v1")
    actions = [(a.action, a.actor) for a in store.model_audit(version="v2")]
    assert actions == [("registered", "hub:retrain"), ("gate", "hub:retrain"), ("rollout_start", "operator:ana"),
                       ("rollout_advance", "system"), ("rollout_rollback", "operator:bo")]

"""Simulated technicians on the product's paths: the hub's queue and annotations over HTTP with a technician token
(the real FastAPI app on a real SQLite file), and annotations at the machine in a real agent's database, sent to
the hub by the agent itself over a real mosquitto."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.app import build_agent
from fleetloop.devbroker import DevBroker
from fleetloop.technicians import ApiInbox, MachineLogs
from hub.errors import HubRefusedError
from hub.mqtt.ingest import IngestWorker
from hub.store import open_store
from shared.codec import decode
from shared.messages import Annotation, Anomaly, Sample
from shared.topics import Kind, Topics
from sim.desk import TechnicianDesk, site_staff
from sim.machine import MachineConfig
from sim.technicians import GroundTruth, SimDevice
from tests.agent.helpers import FAST_LIVES, agent_settings
from tests.fixtures.broker import HUB_USER
from tests.hub.api.conftest import T0, TOKEN, online, running_hub

HORIZON = 20


def window(device: SimDevice, step: int, *, score: float = 0.2, reason: str = "random") -> Anomaly | Sample:
    """The prediction a device sends for the window ending on `step` (scored 0.5 s later)."""
    end = device.ts_of(step)
    common = {"device_id": device.device_id, "ts": end + 0.5, "trace_id": f"{device.device_id}-{step}",
              "window_start": end - 3, "window_end": end, "score": score, "threshold": 0.5,
              "features": [0.1, 0.2, 0.3], "model_version": "v1"}
    if score >= 0.5:
        return Anomaly(decision=True, **common)
    return Sample(decision=False, reason=reason, **common)  # type: ignore[arg-type]


def test_the_hub_queue_is_worked_over_http_with_a_technician_token(tmp_path: Path) -> None:
    devices = {d: SimDevice(d, seed=i + 3, config=MachineConfig(site=f"site-{'ab'[i]}", **FAST_LIVES), start_ts=T0,
                          rate=10.0)
               for i, d in enumerate(("pump-1", "pump-2"))}
    with running_hub(tmp_path / "hub.db") as hub:
        sent = [window(dev, step, score=0.9 if step % 50 == 0 else 0.2) for dev in devices.values()
                for step in range(10, 400, 5)]
        hub.ingest(online("pump-1", site="site-a"), online("pump-2", site="site-b"), *sent)
        hub.clock.now = T0 + 100.0
        inbox = ApiInbox(hub.url, TOKEN["technician"], devices=sorted(devices))
        try:
            queued = inbox.unlabelled(since=T0)
            assert sorted(p.trace_id for p in queued) == sorted(m.trace_id for m in sent)
            by_trace = {m.trace_id: m for m in sent}
            assert all(p.window_end == by_trace[p.trace_id].window_end for p in queued)  # what ground truth needs
            newest = inbox.unlabelled(since=devices["pump-1"].ts_of(395) + 0.5)  # scored 0.5 s after its end
            assert sorted(p.trace_id for p in newest) == ["pump-1-395", "pump-2-395"]

            truth = GroundTruth()
            desk = TechnicianDesk(devices, inbox=inbox, staff=site_staff(devices, horizon=HORIZON, truth=truth,
                                                                         error_rates=(0.0,)))
            assert desk.run(now=T0 + 100.0) == len(sent)
            stored = hub.store.annotations(limit=10_000)
            assert len(stored) == len(sent) and {a.trace_id for a in stored} == set(by_trace)
            for a in stored:
                device = devices[a.device_id]
                fails = truth.rul_at(device, device.step_at(by_trace[str(a.trace_id)].window_end)) <= HORIZON
                assert a.label == ("fault" if fails else "no_fault")
                assert a.technician_id == f"tech-{device.config.site}" and a.model_version == "v1"
            assert 0 < sum(a.label == "fault" for a in stored) < len(stored)
            assert inbox.unlabelled(since=T0) == []  # labelled: off the queue
            inbox.submit([Annotation(annotation_id=stored[0].annotation_id, device_id=stored[0].device_id,
                                     ts=T0 + 200, trace_id=stored[0].trace_id, label=stored[0].label,  # type: ignore
                                     fault_type=stored[0].fault_type, technician_id=stored[0].technician_id,
                                     confidence=stored[0].confidence)], now=T0 + 200)
            assert len(hub.store.annotations(limit=10_000)) == len(sent)  # a retry is stored once
        finally:
            inbox.close()

        viewer = ApiInbox(hub.url, TOKEN["viewer"])
        try:
            with pytest.raises(HubRefusedError, match="403"):
                viewer.unlabelled(since=T0)
            with pytest.raises(HubRefusedError, match="403"):
                viewer.submit([Annotation(device_id="pump-1", ts=T0, trace_id="pump-1-10", label="fault",
                                          technician_id="intruder")], now=T0)
        finally:
            viewer.close()
        assert len(hub.store.annotations(limit=10_000)) == len(sent)  # the viewer's annotation was refused


def test_on_site_annotations_go_through_the_agents_own_database_and_mqtt(tmp_path: Path, broker: DevBroker,
                                                                       initial_model_dir: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER, password=broker.password(HUB_USER),
                          store=store, share_group="techs", client_id="techs-ingest", batch_size=100)
    worker.start()
    logs = MachineLogs(tmp_path)
    try:
        assert worker.wait_ready(10)
        start = 1_700_000_000.0
        source = {"kind": "sim", "rate": 0, "seed": 11, "sim_config": FAST_LIVES, "start_ts": start}
        settings = agent_settings(tmp_path, broker, "dev-4", initial_model_dir, sample_rate=0.3, source=source)
        build_agent(settings).run(max_windows=300, drain_s=15)
        assert worker.wait_idle(quiet_s=0.5, timeout=20)

        rows = logs.logged("dev-4", after_row=0, until_ts=float("inf"))
        reported = {r.trace_id for r in rows if r.reported is not None}
        in_hub = {p.trace_id for p in store.predictions(0, 1e12, device_ids=["dev-4"])}
        assert len(rows) == 300 and reported == in_hub  # the log knows exactly what the hub got
        assert {r.reported for r in rows} >= {"random", None}

        machine = SimDevice("dev-4", seed=11, config=MachineConfig(**FAST_LIVES), start_ts=start, rate=0.0)
        staff = site_staff({"dev-4": machine}, horizon=HORIZON)

        class NoQueue:  # the hub's queue is another test's: here only the technician at the machine works
            def unlabelled(self, since: float) -> list[Sample]:
                return []

            def submit(self, annotations: object, now: float) -> None:
                raise AssertionError("nothing goes to the hub's API from the machine")

        desk = TechnicianDesk({"dev-4": machine}, inbox=NoQueue(), staff=staff, logs=logs)
        made = desk.run(now=time.time() + 5)  # every logged row is older than the technician's delay
        assert made == len(rows) - len(reported) > 0 and desk.tally.on_site == made
        logs.close()

        db = sqlite3.connect(f"file:{tmp_path / 'dev-4' / 'agent.db'}?mode=ro", uri=True)
        try:
            queued = [decode(Annotation, bytes(p)) for (p,) in db.execute(
                "SELECT payload FROM outbox WHERE topic = ?", (Topics().topic("dev-4", Kind.ANNOTATION),))]
            local = {r[0] for r in db.execute("SELECT trace_id FROM annotations WHERE technician_id = 'tech-on-site'")}
        finally:
            db.close()
        assert len(queued) == made and local == {a.trace_id for a in queued} == {
            r.trace_id for r in rows if r.reported is None}

        build_agent(settings).run(max_windows=1, drain_s=15)  # the agent sends what the technician queued
        assert worker.wait_idle(quiet_s=0.5, timeout=20)
        at_hub = {a.trace_id for a in store.annotations(device_id="dev-4", limit=10_000)}
        assert at_hub == local and not at_hub & in_hub  # windows the hub had not seen: it asks for them
        assert store.dead_letter_counts() == {}
    finally:
        logs.close()
        worker.stop()
        store.close()


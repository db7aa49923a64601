"""`fleetloop sim`: simulated readings as CSV, the fleet plan and agent settings files, a fleet on a real broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from agent.settings import AgentSettings
from agent.sources.replay import CsvSource
from fleetloop.cli import main
from fleetloop.fleet import Fleet, FleetMonitor, FleetSettings, agent_config, plan_fleet, to_toml
from shared.codec import encode
from shared.errors import ConfigError
from shared.messages import Anomaly, Stats, Status
from shared.wire import to_json_data
from sim.dataset import default_fleet
from sim.drift import SensorOffset
from sim.machine import SENSORS, SimulatedMachine
from tests.fixtures.broker import publish

REPO = Path(__file__).resolve().parents[1]


def readings(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["sim", "readings", *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_readings_cli_prints_a_header_and_k_rows() -> None:
    done = subprocess.run([sys.executable, "-m", "fleetloop.cli", "sim", "readings", "--seed", "3", "--steps", "25"],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ",".join(["t", *SENSORS, "rul"])
    assert len(lines) == 26
    assert [row.split(",")[0] for row in lines[1:]] == [str(t) for t in range(25)]


def test_readings_are_deterministic_for_a_seed_and_are_the_machines_readings(capsys) -> None:
    first = readings(capsys, "--machine-id", "m-1", "--seed", "5", "--steps", "40")
    assert readings(capsys, "--machine-id", "m-1", "--seed", "5", "--steps", "40") == first
    assert readings(capsys, "--machine-id", "m-1", "--seed", "6", "--steps", "40") != first
    trace = SimulatedMachine("m-1", 5).run(40)
    values = np.array([[float(v) for v in row.split(",")[1:-1]] for row in first[1:]])
    np.testing.assert_allclose(values, trace.values, atol=1e-6)
    assert [int(row.split(",")[-1]) for row in first[1:]] == trace.rul.tolist()


def test_readings_take_machine_settings_and_drift(capsys) -> None:
    base = readings(capsys, "--seed", "2", "--steps", "10", "--config", '{"asset_type": "fan"}')
    drift = '{"kind": "sensor_offset", "start_t": 4, "sensor": "vibration", "offset": 50}'
    drifted = readings(capsys, "--seed", "2", "--steps", "10", "--config", '{"asset_type": "fan"}', "--drift", drift)
    column = 1 + SENSORS.index("vibration")
    delta = [float(b.split(",")[column]) - float(a.split(",")[column]) for a, b in zip(base[1:], drifted[1:],
                                                                                      strict=True)]
    assert delta == pytest.approx([0.0] * 4 + [50.0] * 6, abs=2e-6)


@pytest.mark.parametrize("bad", [["--drift", "{not json"], ["--drift", '{"kind": "meteor", "start_t": 0}'],
                                 ["--config", '{"asset_type": "boat"}']])
def test_bad_readings_options_are_one_line_errors(capsys, bad: list[str]) -> None:
    assert main(["sim", "readings", "--steps", "3", *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fleetloop sim: error: ")


def test_the_csv_replay_source_reads_simulated_readings(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sim.csv"
    path.write_text("\n".join(readings(capsys, "--seed", "4", "--steps", "12")) + "\n")
    source = CsvSource(path, time_column="t")
    try:
        assert source.sensors == list(SENSORS)  # the ground-truth rul column is never a sensor
        got = [source.read(0.0) for _ in range(12)]
    finally:
        source.close()
    np.testing.assert_allclose([r.values for r in got if r is not None], SimulatedMachine("sim-000", 4).run(12).values,
                               atol=1e-6)


def test_plan_fleet_deals_devices_into_the_cohorts_with_their_own_seeds() -> None:
    plan = plan_fleet(7, seed=1)
    assert [s.device_id for s in plan] == [f"dev-{i}" for i in range(7)]
    cohorts = [c.cohort for c in default_fleet()]
    assert [s.cohort for s in plan] == [cohorts[i % 3] for i in range(7)]
    assert len({s.seed for s in plan}) == 7
    assert plan_fleet(7, seed=1) == plan and plan_fleet(7, seed=2) != plan
    fast = plan_fleet(2, seed=1, machine_overrides={"life_steps": (150, 300)})
    assert all(s.machine.life_steps == (150, 300) for s in fast)


def test_agent_settings_file_round_trips_and_holds_no_password(tmp_path: Path) -> None:
    spec = plan_fleet(2, seed=9)[1]
    settings = FleetSettings(host="127.0.0.1", port=1884, passwords={"dev-1": "s3cret"}, model_dir=tmp_path / "v1",
                             data_dir=tmp_path / "agents", rate=25.0, stats_interval_s=2.0)
    config = agent_config(spec, settings)
    text = to_toml(config)
    assert "s3cret" not in text
    parsed = tomllib.loads(text)
    agent = AgentSettings.load(None, **parsed, mqtt_password="s3cret")
    assert (agent.device_id, agent.site, agent.asset_type) == ("dev-1", "site-b", "compressor")
    assert agent.source.kind == "sim" and agent.source.seed == spec.seed and agent.source.rate == 25.0
    assert agent.source.sim_config == to_json_data(spec.machine)
    assert agent.data_dir == (tmp_path / "agents" / "dev-1").resolve()
    assert to_toml({"a b": 'quote " and \\ and é', "t": {"n": {"x": [1, 2.5, True]}}}) == (
        '"a b" = "quote \\" and \\\\ and \\u00e9"\n\n[t]\nn = { x = [1, 2.5, true] }\n'
    )
    assert tomllib.loads(to_toml({"a b": 'quote " and \\ and é'}))["a b"] == 'quote " and \\ and é'


@pytest.mark.slow
def test_sim_fleet_runs_agents_against_an_existing_broker(tmp_path: Path, broker, initial_model_dir: Path) -> None:
    cmd = [sys.executable, "-m", "fleetloop.cli", "sim", "fleet", "--devices", "2", "--credentials",
           str(broker.credentials_path), "--model", str(initial_model_dir), "--rate", "100", "--duration", "6",
           "--data-dir", str(tmp_path / "fleet"), "--stats-interval", "1", "--every", "1", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["devices_ever_online"] == 2 and summary["ok"]
    assert "predictions/s" in done.stderr and "online 2/2" in done.stderr
    for device, row in summary["devices"].items():
        assert row["windows"] > 0 and row["windows"] == row["agent"]["windows"], device
    for device in ("dev-0", "dev-1"):  # the password goes through the environment, not the file
        config = (tmp_path / "fleet" / device / "agent.toml").read_text()
        assert broker.password(device) not in config


def test_monitor_tallies_presence_rates_and_messages_and_drops_bad_ones(broker, mqtt_clients) -> None:
    monitor = FleetMonitor(broker.host, broker.port, broker.password("hub"), ["dev-7"], prefix=broker.prefix)
    monitor.start()
    try:
        device = mqtt_clients.connect(broker, "dev-7")
        now = time.time()
        publish(device, "fleetloop/dev-7/status", encode(Status(device_id="dev-7", ts=now, state="online",
                                                               model_version="v1", site="s", asset_type="fan")))
        publish(device, "fleetloop/dev-7/stats", encode(Stats(
            device_id="dev-7", ts=now, model_version="v1", period_start=now - 2, period_end=now, windows=20,
            anomalies=1, samples=0, bad_readings=0, bad_rows=0, inference_errors=0, nan_scores=0, feature_hist=[],
            score_hist=[])))
        anomaly = encode(Anomaly(device_id="dev-7", ts=now, model_version="v1", trace_id="t-1", window_start=now - 1,
                                 window_end=now, score=0.9, threshold=0.5, decision=True, features=[0.1]))
        publish(device, "fleetloop/dev-7/anomaly", anomaly)
        publish(device, "fleetloop/dev-7/anomaly", anomaly)  # a QoS 1 redelivery counts once
        publish(device, "fleetloop/dev-7/sample", b"{not json")
        deadline = time.monotonic() + 5
        while monitor.snapshot().rejected < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        snap = monitor.snapshot()
        (tally,) = snap.devices
        assert (tally.online, tally.ever_online, tally.model_version, tally.asset_type) == (True, True, "v1", "fan")
        assert (tally.windows, tally.anomalies, tally.samples, snap.rejected) == (20, 1, 0, 1)
        assert snap.predictions_per_s == pytest.approx(10.0)
        assert "online 1/1" in snap.progress_line(3.0)
    finally:
        monitor.stop()


def test_monitor_with_a_wrong_password_is_a_config_error(broker) -> None:
    monitor = FleetMonitor(broker.host, broker.port, "not-the-password", ["dev-0"], prefix=broker.prefix)
    with pytest.raises(ConfigError, match="refused"):
        monitor.start(timeout=5)


def test_stop_kills_an_agent_that_ignores_sigterm(tmp_path: Path) -> None:
    settings = FleetSettings(host="127.0.0.1", port=1883, passwords={"dev-0": "pw"}, model_dir=tmp_path / "v1",
                             data_dir=tmp_path / "agents")
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "manifest.json").write_text("{}")
    fleet = Fleet(plan_fleet(1, seed=0), settings)
    ready = tmp_path / "ready"
    stubborn = "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
               "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    fleet.agents["dev-0"].proc = subprocess.Popen([sys.executable, "-c", stubborn, str(ready)])
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    fleet.stop(timeout=1.0)
    assert fleet.exit_codes() == {"dev-0": -signal.SIGKILL}
    assert time.monotonic() - started < 5


def test_drift_plan_is_written_for_each_device(tmp_path: Path) -> None:
    offset = SensorOffset(start_t=100, sensor="temperature", offset=5.0)
    plan = plan_fleet(3, seed=0, drift=lambda spec: [offset] if spec.device_id == "dev-1" else [])
    assert [len(s.drifts) for s in plan] == [0, 1, 0]
    settings = FleetSettings(host="127.0.0.1", port=1883, passwords={}, model_dir=tmp_path, data_dir=tmp_path)
    assert agent_config(plan[1], settings)["source"]["drifts"] == [to_json_data(offset)]
    assert "drifts" not in agent_config(plan[0], settings)["source"]

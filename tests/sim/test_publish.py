"""`fleetloop sim publish` on a real broker: each device's mqtt source gets its own machine's readings, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.sources.mqtt import MqttSource
from fleetloop.cli import main
from fleetloop.devbroker import DevBroker
from fleetloop.fleet import plan_fleet
from fleetloop.provision import SIM_USER
from sim.machine import SENSORS, SimulatedMachine

RATE = 50.0


def password_file(broker: DevBroker, tmp_path: Path) -> Path:
    path = tmp_path / "sim-password"
    path.write_text(broker.add_device(SIM_USER) + "\n")
    return path


def test_each_device_reads_its_own_simulated_machine(fresh_broker: DevBroker, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    secret = password_file(fresh_broker, tmp_path)
    source = MqttSource(fresh_broker.host, fresh_broker.port, "sensors/dev-1/readings", SENSORS,
                        username="dev-1", password=fresh_broker.password("dev-1"))
    try:
        assert source.wait_subscribed(10)
        assert main(["sim", "publish", "--host", fresh_broker.host, "--port", str(fresh_broker.port),
                     "--password-file", str(secret), "--devices", "3", "--seed", "4", "--rate", str(RATE),
                     "--duration", "0.5"]) == 0
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert summary["devices"] == 3 and summary["dropped"] == 0 and summary["published"] % 3 == 0
        steps = summary["published"] // 3
        assert steps > 0
        readings = [source.read(10.0) for _ in range(steps)]
    finally:
        source.close()
    assert source.bad_rows == 0 and all(r is not None for r in readings)
    spec = plan_fleet(3, seed=4)[1]  # dev-1's machine: the cohort and seed `sim fleet` would give it
    expected = SimulatedMachine("dev-1", spec.seed, spec.machine).run(steps)
    np.testing.assert_array_equal(np.array([r.values for r in readings if r is not None]), expected.values)
    times = np.array([r.ts for r in readings if r is not None])
    np.testing.assert_allclose(np.diff(times), 1.0 / RATE, atol=1e-5)  # stamped on the simulated clock, not on arrival


@pytest.mark.parametrize(("args", "message"), [
    (["--topic", "sensors/all"], "has no {device_id}"),
    (["--rate", "0"], "--rate must be > 0"),
])
def test_bad_options_are_one_line_errors(fresh_broker: DevBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], message: str) -> None:
    secret = password_file(fresh_broker, tmp_path)
    assert main(["sim", "publish", "--port", str(fresh_broker.port), "--password-file", str(secret), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fleetloop sim: error: ") and message in err


def test_a_refused_login_is_a_clear_error(fresh_broker: DevBroker, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    assert main(["sim", "publish", "--port", str(fresh_broker.port), "--password-file", str(wrong),
                 "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot publish to 127.0.0.1" in err and "'sim'" in err
    assert main(["sim", "publish", "--port", str(fresh_broker.port), "--password-file", str(tmp_path / "none")]) == 2
    assert "cannot read --password-file" in capsys.readouterr().err

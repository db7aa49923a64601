"""`fleetloop agent …` commands on a real database: annotate, status, models."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from agent.app import build_agent
from agent.db import PRIORITY_ANNOTATION, AgentDB
from agent.settings import AgentSettings
from agent.sources.memory import ArraySource
from fleetloop.cli import main
from shared.codec import decode
from shared.messages import Annotation
from sim import SENSORS


def _agent_with_predictions(tmp_path, model_dir):
    settings = AgentSettings(device_id="dev-cli", dev_mode=True, data_dir=tmp_path, initial_model=model_dir)
    values = np.random.default_rng(1).normal(size=(300, len(SENSORS))) + 10
    agent = build_agent(settings, ArraySource(SENSORS, values), connect=False)
    agent.run(max_windows=20)
    trace = agent.db.conn.execute("SELECT trace_id, ts FROM predictions ORDER BY id LIMIT 1").fetchone()
    agent.db.close()
    return trace


def test_annotate_by_trace_id_queues_it_first(tmp_path, initial_model_dir, capsys):
    trace_id, _ = _agent_with_predictions(tmp_path, initial_model_dir)
    code = main(["agent", "annotate", "--device-id", "dev-cli", "--data-dir", str(tmp_path), "--trace-id", trace_id,
                 "--label", "fault", "--fault-type", "bearing", "--technician", "tech-7", "--note", "noisy"])
    assert code == 0
    assert "queued for the hub" in capsys.readouterr().out
    db = AgentDB(tmp_path / "agent.db")
    row = db.conn.execute("SELECT trace_id, label, fault_type, technician_id FROM annotations").fetchone()
    assert row == (trace_id, "fault", "bearing", "tech-7")
    first = db.due_outbox(1e12, 1)[0]  # annotations leave before anything else
    assert first.priority == PRIORITY_ANNOTATION and first.topic == "fleetloop/dev-cli/annotation"
    message = decode(Annotation, first.payload)
    assert (message.trace_id, message.label, message.note) == (trace_id, "fault", "noisy")


def test_annotate_range_and_unknown_trace(tmp_path, initial_model_dir, capsys):
    _, ts = _agent_with_predictions(tmp_path, initial_model_dir)
    assert main(["agent", "annotate", "--device-id", "dev-cli", "--data-dir", str(tmp_path), "--range", str(ts - 1),
                 str(ts + 60), "--label", "no_fault", "--technician", "t1"]) == 0
    capsys.readouterr()
    # an unknown trace id is refused in one line, and nothing is queued (issue 11 #3)
    assert main(["agent", "annotate", "--device-id", "dev-cli", "--data-dir", str(tmp_path), "--trace-id", "nope",
                 "--label", "fault", "--technician", "t1"]) == 2
    out, err = capsys.readouterr()
    assert "queued" not in out and len(err.strip().splitlines()) == 1
    assert "trace nope is not in the log of dev-cli" in err
    db = AgentDB(tmp_path / "agent.db")
    assert db.conn.execute("SELECT count(*) FROM annotations").fetchone() == (1,)  # the range one only
    db.close()


def test_annotate_range_takes_iso_and_relative_times(tmp_path, initial_model_dir, capsys):
    _, ts = _agent_with_predictions(tmp_path, initial_model_dir)
    start = datetime.fromtimestamp(ts - 1, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")  # no zone: UTC
    assert main(["agent", "annotate", "--device-id", "dev-cli", "--data-dir", str(tmp_path), "--range", start, "now",
                 "--label", "no_fault", "--technician", "t1"]) == 0
    db = AgentDB(tmp_path / "agent.db")
    row = db.conn.execute("SELECT start_ts, end_ts FROM annotations").fetchone()
    db.close()
    assert row[0] == int(ts - 1) and abs(row[1] - time.time()) < 60
    assert main(["agent", "annotate", "--device-id", "dev-cli", "--data-dir", str(tmp_path), "--range", "yesterday",
                 "now", "--label", "no_fault", "--technician", "t1"]) == 2
    assert "cannot read the time 'yesterday'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["annotate", "--trace-id", "0197abc", "--label", "fault", "--technician", "t1"],
    ["status"], ["models", "list"], ["anomalies", "--last", "5"],
])
@pytest.mark.parametrize("where", ["missing data dir", "no agent.db"])
def test_a_missing_data_dir_or_database_is_refused_not_created(tmp_path, monkeypatch, capsys, command, where):
    """Issue 11 #3: `agent annotate` without --config made ./var/agent/agent.db and said "queued for the hub"."""
    monkeypatch.chdir(tmp_path)  # the default data dir, var/agent, is relative to it
    if where == "no agent.db":
        (tmp_path / "var" / "agent").mkdir(parents=True)
    assert main(["agent", command[0], "--device-id", "dev-3", *command[1:]]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert ("no agent data dir var/agent" if where == "missing data dir" else "no agent database in var/agent") in err
    assert "--config" in err
    assert not (tmp_path / "var" / "agent" / "agent.db").exists()


def test_anomalies_lists_recent_alarms_with_trace_ids(tmp_path, initial_model_dir, capsys):
    _agent_with_predictions(tmp_path, initial_model_dir)
    db = AgentDB(tmp_path / "agent.db")
    db.conn.execute("UPDATE predictions SET decision = 1 WHERE id IN (2, 5, 7)")  # three alarms
    alarms = db.conn.execute(
        "SELECT trace_id, ts, score FROM predictions WHERE decision = 1 ORDER BY ts DESC").fetchall()
    db.close()
    local = ["--device-id", "dev-cli", "--data-dir", str(tmp_path)]
    assert main(["agent", "anomalies", *local, "--last", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "TRACE", "ID", "SCORE", "MODEL", "UNIT"]
    assert [line.split()[1] for line in lines[1:]] == [alarms[0][0], alarms[1][0]]  # newest first, two of three
    newest = lines[1].split()
    assert newest[0] == datetime.fromtimestamp(alarms[0][1], tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert newest[2] == f"{alarms[0][2]:.3f}" and newest[3] == "v1"
    # a range in ISO and relative times: every alarm, then none before the data
    first = datetime.fromtimestamp(alarms[-1][1] - 1, tz=UTC).isoformat()
    assert main(["agent", "anomalies", *local, "--range", first, "now", "--json"]) == 0
    assert [r["trace_id"] for r in json.loads(capsys.readouterr().out)] == [a[0] for a in alarms]
    assert main(["agent", "anomalies", *local, "--range", "-1000w", "-999w"]) == 0
    assert capsys.readouterr().out.strip() == "no alarms in that range"


def test_annotate_bad_input_is_a_clear_error(tmp_path, capsys):
    code = main(["agent", "annotate", "--device-id", "dev-cli", "--data-dir", str(tmp_path), "--range", "10", "5",
                 "--label", "fault", "--technician", "t1"])
    assert code == 2
    assert "end_ts is before start_ts" in capsys.readouterr().err
    assert main(["agent", "annotate", "--data-dir", str(tmp_path), "--trace-id", "x", "--label", "fault",
                 "--technician", "t"]) == 2
    assert "--device-id" in capsys.readouterr().err


def test_status_and_models(tmp_path, initial_model_dir, capsys):
    _agent_with_predictions(tmp_path, initial_model_dir)
    assert main(["agent", "status", "--device-id", "dev-cli", "--data-dir", str(tmp_path)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["predictions"] == 20 and status["active_model"] == "v1" and status["integrity"] == "ok"
    assert main(["agent", "models", "list", "--device-id", "dev-cli", "--data-dir", str(tmp_path)]) == 0
    assert "v1  (active)" in capsys.readouterr().out


def test_settings_refuse_insecure_defaults(tmp_path, capsys):
    code = main(["agent", "run", "--device-id", "dev-x", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "no MQTT password" in capsys.readouterr().err
    bad = tmp_path / "agent.toml"
    bad.write_text('device_id = "dev x"\nmqtt_password = "p"\nbogus = 1\n')
    assert main(["agent", "run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "invalid device id" in err


def test_every_settings_problem_is_listed_in_one_run(tmp_path, capsys):
    """Issue 11 #8: a bad field hid the cross-field problems (no password, plain text to another host)."""
    bad = tmp_path / "agent.toml"
    bad.write_text('device_id = "dev x"\nmqtt_host = "10.1.2.3"\nmqtt_port = 0\n')
    assert main(["agent", "run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    for problem in ("invalid device id", "mqtt_port", "no MQTT password", "refusing plain-text MQTT to 10.1.2.3"):
        assert problem in err, err


def test_models_install_checks_the_signature(tmp_path, initial_model_dir, capsys):
    import shutil

    from hub.registry.signing import SigningKey

    key, other = SigningKey.generate(), SigningKey.generate()
    signed = tmp_path / "v1"
    shutil.copytree(initial_model_dir, signed)
    key.sign_version(signed)
    local = ["--device-id", "dev-cli", "--data-dir", str(tmp_path / "agent")]
    AgentDB(tmp_path / "agent" / "agent.db").close()  # a device that has run
    assert main(["agent", "models", "install", str(signed), *local]) == 2
    assert "--public-key" in capsys.readouterr().err
    assert main(["agent", "models", "install", str(signed), *local, "--public-key", other.public_key_text()]) == 2
    assert "signature" in capsys.readouterr().err
    assert main(["agent", "models", "install", str(signed), *local, "--public-key", key.public_key_text()]) == 0
    assert "installed v1" in capsys.readouterr().out


def test_version_is_read_only_when_asked_for(capsys):
    """``fleetloop --version`` prints the installed version; a command that does not ask never reads the package
    metadata (importlib.metadata and the lookup were a few percent of an agent's start)."""
    import subprocess
    import sys
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"fleetloop {version('fleetloop')}"
    code = ("import sys; from fleetloop.cli import _top_parser; import agent.app, agent.settings, sim; "
            "_top_parser().parse_args(['agent', 'run']); "
            "print('importlib.metadata' in sys.modules, 'sim.dataset' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"], out

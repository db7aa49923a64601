"""`fleetloop agent …` commands on a real database: annotate, status, models."""

from __future__ import annotations

import json

import numpy as np

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
    assert main(["agent", "annotate", "--device-id", "dev-cli", "--data-dir", str(tmp_path), "--trace-id", "nope",
                 "--label", "fault", "--technician", "t1"]) == 0
    assert "not in this device's log" in capsys.readouterr().out


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


def test_models_install_checks_the_signature(tmp_path, initial_model_dir, capsys):
    import shutil

    from hub.registry.signing import SigningKey

    key, other = SigningKey.generate(), SigningKey.generate()
    signed = tmp_path / "v1"
    shutil.copytree(initial_model_dir, signed)
    key.sign_version(signed)
    local = ["--device-id", "dev-cli", "--data-dir", str(tmp_path / "agent")]
    assert main(["agent", "models", "install", str(signed), *local]) == 2
    assert "--public-key" in capsys.readouterr().err
    assert main(["agent", "models", "install", str(signed), *local, "--public-key", other.public_key_text()]) == 2
    assert "signature" in capsys.readouterr().err
    assert main(["agent", "models", "install", str(signed), *local, "--public-key", key.public_key_text()]) == 0
    assert "installed v1" in capsys.readouterr().out

"""The run's settings on the compressed clock, the report, and the command's edges (help, missing data)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fleetloop.cli import main
from fleetloop.evaluation.report import EvalReport, ModelScore
from fleetloop.evaluation.settings import PROFILES, EvalConfig, config_for, loop_settings
from hub.rollout import HealthLimits
from hub.training.settings import GateSettings
from shared.errors import ConfigError


def test_profiles_and_overrides() -> None:
    fast = config_for("fast", Path("/data"), seed=3, rate=None)
    assert (fast.mode, fast.devices, fast.engines, fast.max_engines, fast.rate, fast.seed) == \
        ("fast", 5, None, 140, 250.0, 3)
    # the profile's 140 is a cap: a 100-engine file replays all of it, an explicit --engines is taken as asked
    assert (fast.n_engines(260), fast.n_engines(100), replace(fast, engines=120).n_engines(100)) == (140, None, 120)
    assert config_for("default", Path("/data")).n_engines(260) is None
    assert fast.base_weight == 0.0 and config_for("default", Path("/data")).base_weight == 0.3
    assert fast.fleet_path == Path("/data/train_FD002.txt") and fast.train_ref_path == Path("/data/train_FD001.txt")
    assert set(PROFILES) == {"default", "fast"}
    # the full run labels as the hub's policy asks (issue 14); --fast evenly; --label-policy overrides either
    assert (config_for("default", Path("/data")).label_policy, fast.label_policy) == ("select", "even")
    assert config_for("default", Path("/data"), label_policy="even").label_policy == "even"
    # feature set 2's regimes: commissioned before the run by default; learned by the hub from the field on request
    assert config_for("default", Path("/data")).regimes == "commissioned"
    with pytest.raises(ConfigError, match="--regimes must be commissioned or field"):
        EvalConfig(data_dir=Path("/data"), regimes="learned")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--rate"):
        EvalConfig(data_dir=Path("/data"), rate=0.0)
    with pytest.raises(ConfigError, match="--label-delay"):
        EvalConfig(data_dir=Path("/data"), label_delay=-1)


def test_loop_settings_scale_to_engine_lives_and_replay_phases() -> None:
    config = config_for("default", Path("/data"), lockstep=False)
    s = loop_settings(config, mean_cycles=200.0, replay_s=120.0, expected_labels=10_000, positive_rate=0.15,
                      engine_windows=196, feedback_engines=100)
    assert s.engine_s == pytest.approx(5.0)  # 200 cycles at 40 per second
    t = s.training
    assert t.base_set == "cmapss:" + str(Path("/data/train_FD001.txt").resolve()) and t.sim_weight == 0.3
    assert t.split_block_s == pytest.approx(5.0) and t.sim_horizon == 30
    triggers = t.triggers
    assert 3000 <= triggers.min_total_labels <= 7000 and triggers.schedule_interval_s is None
    assert triggers.min_total_labels + triggers.min_new_labels <= 10_000
    assert triggers.cooldown_s == pytest.approx(30.0)
    assert t.gate == GateSettings()  # the product's gate: its recall/false-alarm trade replaces a blind v1
    assert s.drift.window_s == pytest.approx(25.0) and s.drift.min_samples == 300
    assert s.policies["canary"].min_duration_s == pytest.approx(5.0) and s.policies["canary"].min_windows == 98
    assert s.limits.anomaly_rate_factor == HealthLimits().anomaly_rate_factor and s.canary == 0.25
    # the product's limits, but for the latency budget of gateways sharing two cores with the hub and the windows
    # before anomaly rates are compared, which scale with the clock like the canary's own minimum (98 here), and the
    # random vectors of the traffic yardstick (5% of those, at least 10)
    assert s.limits == replace(HealthLimits(), latency_p99_ms=200.0, min_rate_windows=98, min_traffic_samples=10)
    assert s.agent["stats_interval_s"] == 1.0 and s.agent["site"] == "train-FD002"
    assert t.regimes == "parent"  # commissioned regimes: every retrain keeps v1's
    field = loop_settings(replace(config, regimes="field"), mean_cycles=200.0, replay_s=120.0,
                          expected_labels=10_000, positive_rate=0.15, engine_windows=196, feedback_engines=100)
    assert field.training.regimes == "auto"  # the hub learns the fleet's when the field runs far from v1's
    # few labels: the first retrain waits for what the gate needs, at most 70% of them
    small = loop_settings(config, mean_cycles=200.0, replay_s=20.0, expected_labels=1000, positive_rate=0.15,
                          engine_windows=98, feedback_engines=50)
    assert small.training.triggers.min_total_labels == 700
    # many engines: the 10 failures the gate needs in its slice come before its 50 positives
    many = loop_settings(config, mean_cycles=200.0, replay_s=20.0, expected_labels=12_000, positive_rate=0.15,
                         engine_windows=98, feedback_engines=120)
    assert many.training.triggers.min_total_labels == 5000  # 1.5 * 10 / 0.3 engines of 100 labels
    # lockstep (the default): the waits on the wall clock become waits on the data clock, held at milestones
    held = loop_settings(config_for("default", Path("/data")), mean_cycles=200.0, replay_s=120.0,
                         expected_labels=10_000, positive_rate=0.15, engine_windows=196, feedback_engines=100)
    assert (held.milestone, held.cooldown, held.training.triggers.cooldown_s) == (100, 1200, 0.0)  # 30 s at 40/s
    assert held.policies["canary"].min_duration_s == 0.0 and held.policies["canary"].min_windows == 98
    assert held.drift.window_s == pytest.approx(100.0)  # 20 engine lives: held, the replay is slower
    assert held.limits.latency_p99_ms == held.agent["health_latency_ms"] == 5000.0  # load must not decide
    assert held.policies["fleet"].timeout_s == config.timeout_s and held.agent["stats_interval_s"] == 0.25
    assert (s.milestone, s.cooldown) == (0, 0)


def report() -> EvalReport:
    scores = [ModelScore("static", "v1", 0.7, {"f1": 0.3, "recall": 0.9, "false_alarm_rate": 0.7, "roc_auc": 0.77}),
              ModelScore("loop", "v3", 0.5, {"f1": 0.85, "recall": 0.8, "false_alarm_rate": 0.02}),
              ModelScore("oracle", "oracle", 0.5, {"f1": 0.86, "recall": 0.84, "false_alarm_rate": 0.02,
                                                    "roc_auc": float("nan")})]
    return EvalReport(mode="fast", scores=scores, eval_windows=5000, eval_positives=700, predictions=10_000,
                      labels_sent=2500, labels_used=2400, retrains=2, retrains_passed=2, rollouts_completed=1,
                      recovery_cycles=2800, final_cycles=None, fleet_cycles=5400, drift_cycles=700, wall_s=30.04,
                      details={"seed": 7, "estimated_f1": 0.83, "estimate_error": -0.02})


def test_the_report_has_a_row_per_model_and_the_keys_asked_for() -> None:
    r = report()
    data = json.loads(json.dumps(r.to_json()))  # JSON-safe
    assert {"static_f1", "loop_f1", "oracle_f1", "labels_used_fraction"} <= set(data)
    assert (data["loop_f1"], data["labels_used_fraction"], data["oracle_auc"], data["loop_auc"]) == (0.85, 0.24,
                                                                                                       None, None)
    assert (data["static_far"], data["recovery_cycles"], data["final_model_cycles"], data["seed"]) == (0.7, 2800,
                                                                                                         None, 7)
    table = r.table()
    lines = table.splitlines()
    assert lines[0].split()[:6] == ["model", "version", "F1", "recall", "false", "alarms"]
    assert lines[2].startswith("static") and lines[3].startswith("loop") and lines[4].startswith("oracle")
    assert "2,400 of 10,000 predictions (24.0%)" in table and "not reached" in table
    assert "0.830 estimated for the loop's model from its scores alone (error -0.020" in table
    assert (data["estimated_f1"], data["estimate_error"]) == (0.83, -0.02)


def test_missing_data_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "cmapss", "--fast", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere does not exist" in err and "--data" in err
    (tmp_path / "train_FD001.txt").write_text("")
    assert main(["eval", "cmapss", "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"fleetloop eval: error: train_FD002.txt not found in {tmp_path}"
    assert main(["eval", "cmapss", "--data", str(tmp_path), "--fleet", "test_FD002.txt"]) == 2
    assert "must run to failure" in capsys.readouterr().err


def test_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "cmapss", "--help"])
    out = capsys.readouterr().out
    for option in ("--data", "--train-ref", "--fleet", "--fast", "--json", "--devices", "--label-budget", "--regimes"):
        assert option in out

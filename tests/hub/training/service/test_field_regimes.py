"""A retrain that learns feature set 2's regime statistics from the field (``--regimes field``): real SQLite store,
signed registry, ONNX and onnxruntime. The parent (v1) was fitted on a one-regime C-MAPSS-like file; the fleet runs
in three regimes and uploads the raw windows (with the readings before them) of most of its labelled traces.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from fleetloop.cli import main
from hub.api import create_app
from hub.app.settings import HubSettings
from hub.errors import RetrainError
from hub.labels.service import LabelSettings, validate_and_save
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.store.rows import DeviceMessage, IngestRecord, TrainingJobRow
from hub.store.sqlite import SqliteHubStore
from hub.training.service import TrainingService
from hub.training.settings import GateSettings, TrainingSettings
from hub.training.triggers import TriggerPolicy
from infra.datasets import CMAPSS_SENSORS
from models.cmapss import build_cmapss, engine_windows
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.features import REGIMES, WindowSpec
from shared.history import CONTEXT
from shared.manifest import ModelManifest
from shared.messages import Annotation, RawWindow, Sample, Status
from tests.evaluation.synthetic import synthetic_rows, write_cmapss
from tests.fixtures.regimes import REGIME_SETTINGS, regime_rows
from tests.hub.api.conftest import TOKEN, TOKENS, serve
from tests.hub.training.conftest import World as SimWorld

WINDOW = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=2, feature_set_version=REGIMES)
SMALL = {"n_estimators": 30}
T0 = 1_700_000_000.0
NOW = T0 + 2e6
CYCLE_S = 10.0
NO_WINDOW_EVERY = 9  # every 9th labelled trace has no raw window: it cannot be restated


@dataclass
class Fleet:
    v1: ModelManifest
    store: SqliteHubStore
    registry: Registry
    root: Path
    X: dict[str, np.ndarray]  # each trace's features as v1 scored them
    y: dict[str, int]
    windows: int  # raw windows uploaded
    readings: int  # distinct readings in them
    unwindowed: int  # labelled traces without one


def fleet_messages(engines: dict[int, np.ndarray], v1: ModelManifest) -> tuple[list[DeviceMessage], dict[str, Any]]:
    """Four gateways: every window sampled and confirmed by a technician, scored on v1's features (its regimes), and
    the raw window of each (but every `NO_WINDOW_EVERY`th) with `CONTEXT` readings before it and their count."""
    data = engine_windows(engines, sorted(engines), WINDOW, 30, v1.regimes)
    messages: list[DeviceMessage] = [Status(device_id=f"gw-{i}", ts=T0, state="online", site="syn", model_version="v1")
                                     for i in range(4)]
    X, y, windows, unwindowed, covered = {}, {}, 0, 0, set()
    for k in range(len(data)):
        unit, end = int(data.unit[k]), int(data.cycle[k]) - 1  # end: the window's last reading (0-based)
        device, trace = f"gw-{unit % 4}", f"t-{k:05d}"
        stamp = T0 + CYCLE_S * (unit * 1000 + np.arange(len(engines[unit])))  # each unit its own span of time
        ts = float(stamp[end])
        messages.append(Sample(device_id=device, ts=ts, trace_id=trace, window_start=float(stamp[end - 4]),
                               window_end=ts, unit=str(unit), score=0.5, threshold=0.5, decision=False,
                               features=data.X[k].tolist(), model_version="v1", reason="random"))
        messages.append(Annotation(device_id=device, ts=ts + 1, trace_id=trace, technician_id="tech",
                                   label="fault" if data.y[k] else "no_fault", signal="confirmed"))
        X[trace], y[trace] = data.X[k], int(data.y[k])
        if k % NO_WINDOW_EVERY == 0:
            unwindowed += 1
            continue
        first = max(0, end - WINDOW.size + 1 - CONTEXT)
        messages.append(RawWindow(device_id=device, ts=ts + 2, trace_id=trace, unit=str(unit),
                                  sensors=list(CMAPSS_SENSORS), timestamps=stamp[first:end + 1].tolist(),
                                  values=engines[unit][first:end + 1].T.tolist(), service=first))
        windows += 1
        covered |= {(unit, i) for i in range(first, end + 1)}
    return messages, {"X": X, "y": y, "windows": windows, "unwindowed": unwindowed, "readings": len(covered)}


def make_fleet(root: Path) -> Fleet:
    base_file = write_cmapss(root / "data" / "train_ONE.txt", synthetic_rows(30, seed=3))  # one regime, as FD001
    v1 = build_cmapss(root / "v1", path=base_file, seed=3, window=WINDOW, params=SMALL)
    assert v1.regimes is not None and v1.regimes.n_regimes == 1
    store = SqliteHubStore(root / "hub.db")
    registry = Registry(store, root / "models", SigningKey.generate(), clock=lambda: NOW)
    registry.register(root / "v1", actor="test", reason="C-MAPSS v1, feature set 2", status="active")
    rows = regime_rows(40, seed=4)  # three regimes, as FD002
    engines = {int(u): rows[rows[:, 0] == u, 2:] for u in np.unique(rows[:, 0])}
    messages, made = fleet_messages(engines, v1)
    store.ingest_batch([IngestRecord(m, T0 + 1e6) for m in messages])
    validate_and_save(store, LabelSettings(), now=NOW)
    return Fleet(v1, store, registry, root, made["X"], made["y"], made["windows"], made["readings"], made["unwindowed"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    made = make_fleet(tmp_path_factory.mktemp("field-regimes"))
    yield made
    made.store.close()


def settings(**overrides: Any) -> TrainingSettings:
    values: dict[str, Any] = {
        "split_block_s": 100.0, "sim_weight": 0.3, "params": SMALL, "latency_runs": 10,
        "triggers": TriggerPolicy(min_total_labels=10), "gate": GateSettings(latency_budget_ms=1000.0), **overrides,
    }
    return TrainingSettings(**values)


def service(world: Fleet | SimWorld, training: TrainingSettings) -> TrainingService:
    return TrainingService(world.store, world.registry, training, labels=LabelSettings(),
                           staging_dir=world.root / "staging", clock=lambda: NOW)


@pytest.fixture(scope="module")
def field_job(fleet: Fleet) -> TrainingJobRow:
    return service(fleet, settings()).retrain_now(actor="operator:ana", reason="the fleet flies other regimes",
                                                  now=NOW, regimes="field")


def test_the_candidate_carries_the_regimes_learned_from_the_field_and_the_record_of_them(
        fleet: Fleet, field_job: TrainingJobRow) -> None:
    assert field_job.status == "succeeded", field_job.error
    assert field_job.details["regimes"] == "field"  # what was asked, on the job
    m = fleet.registry.manifest(field_job.result_version or "")
    assert m is not None and m.regimes is not None and m.parent_version == "v1"
    assert m.regimes.n_regimes == len(REGIME_SETTINGS) and m.regimes != fleet.v1.regimes
    assert np.allclose(sorted(c[0] for c in m.regimes.centroids), REGIME_SETTINGS[:, 0], atol=0.01)
    p = m.training.params
    assert (p["regimes_from"], p["n_regimes"], p["regimes_field_devices"]) == ("field", 3, 4)
    assert (p["regimes_field_windows"], p["regimes_field_readings"]) == (fleet.windows, fleet.readings)
    assert sum(m.regimes.counts) == fleet.readings + p["regimes_base_readings"]  # each reading once
    assert (p["regimes_restated"], p["regimes_dropped"]) == (len(fleet.y) - fleet.unwindowed, fleet.unwindowed)
    assert p["n_field"] + p["n_eval"] == p["regimes_restated"]  # only restated rows are trained and judged on
    assert field_job.details["counts"]["field_no_raw_window"] == fleet.unwindowed


def test_the_gate_scores_the_incumbent_on_the_features_it_was_scored_with(fleet: Fleet,
                                                                        field_job: TrainingJobRow) -> None:
    row = fleet.registry.get(field_job.result_version or "")
    gate = row.gate or {}
    assert gate["features"] == "own" and gate["verdict"] == field_job.gate_verdict
    windowed = [t for k, t in enumerate(sorted(fleet.y)) if k % NO_WINDOW_EVERY]
    in_slice = [t for t, e in fleet.store.eval_slice_assignments(windowed).items() if e]
    assert len(in_slice) == gate["slice"]["n"] > 0
    manifest, onnx = read_version(fleet.registry.path("v1"))
    y = np.array([fleet.y[t] for t in in_slice], bool)
    alarms = onnx_scores(onnx_session(onnx), np.stack([fleet.X[t] for t in in_slice])) >= manifest.threshold
    inc = gate["incumbent"]
    assert (inc["n_pos"], inc["n_neg"]) == (int(y.sum()), int((~y).sum()))
    assert inc["recall"] == pytest.approx(float(alarms[y].mean()))
    assert inc["false_alarm_rate"] == pytest.approx(float(alarms[~y].mean()))
    # v1 normalises three regimes as one: its features of the field say little; the candidate's restated ones do
    cand = gate["candidate"]
    assert (cand["n_pos"], cand["n_neg"]) == (inc["n_pos"], inc["n_neg"])
    assert cand["f1"] > inc["f1"], (cand, inc)


def test_judged_by_device_k_fold_both_sides_score_every_restated_row_each_on_its_own_features(
        fleet: Fleet, field_job: TrainingJobRow) -> None:
    """A slice too small for the gate's minimums, all labelled rows enough: k-fold by device over the restated rows,
    the incumbent on the features it scored them with."""
    gate_settings = GateSettings(latency_budget_ms=1000.0, min_positives=300)
    job = service(fleet, settings(gate=gate_settings)).retrain_now(actor="test", reason="k-fold", now=NOW,
                                                                    regimes="field")
    assert job.status == "succeeded", job.error
    gate = fleet.registry.get(job.result_version or "").gate or {}
    assert gate["split"]["method"] == "device_kfold" and gate["features"] == "own"
    windowed = [t for k, t in enumerate(sorted(fleet.y)) if k % NO_WINDOW_EVERY]
    y = np.array([fleet.y[t] for t in windowed], bool)
    manifest, onnx = read_version(fleet.registry.path("v1"))
    alarms = onnx_scores(onnx_session(onnx), np.stack([fleet.X[t] for t in windowed])) >= manifest.threshold
    inc, cand = gate["incumbent"], gate["candidate"]
    assert (inc["n_pos"], inc["n_neg"]) == (cand["n_pos"], cand["n_neg"]) == (int(y.sum()), int((~y).sum()))
    assert inc["recall"] == pytest.approx(float(alarms[y].mean()))
    assert inc["false_alarm_rate"] == pytest.approx(float(alarms[~y].mean()))


def test_too_few_field_readings_refuse_the_retrain(fleet: Fleet) -> None:
    job = service(fleet, settings(regimes="field", regimes_min_readings=10**6)).retrain_now(
        actor="test", reason="too few", now=NOW)
    assert job.status == "failed" and job.result_version is None
    assert "at least 1000000 field readings" in (job.error or "")


def test_a_model_made_elsewhere_with_other_regime_statistics_is_not_gated_on_the_incumbents_features(
        fleet: Fleet, tmp_path: Path) -> None:
    """Same window, same width, other regime statistics: the slice's stored features are v1's inputs, not its; the
    gate would score it on the wrong inputs, so registering it is refused (skipping the gate stays possible)."""
    other = tmp_path / "v1-other-regimes"
    shutil.copytree(fleet.registry.path("v1"), other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["version"] = "v1-other-regimes"
    manifest["regimes"]["mean"] = [[m + 1.0 for m in row] for row in manifest["regimes"]["mean"]]
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrainError, match="reads other regime statistics than the active v1"):
        service(fleet, settings()).register_model(other, actor="operator:ana", reason="a lab model")
    assert fleet.store.model_version("v1-other-regimes") is None


def test_a_feature_set_1_parent_is_refused_clearly(drifted: SimWorld) -> None:
    job = drifted.service().retrain_now(actor="test", reason="regimes", now=drifted.clock(),
                                        label_set_id=drifted.label_set_id, regimes="field")
    assert job.status == "failed" and job.details["regimes"] == "field"
    assert "feature set 2's; the parent v1 uses feature set 1" in (job.error or "")


def test_the_regimes_view_shows_the_field_far_from_the_active_regime_and_the_regimes_it_runs_in(
        fleet: Fleet, drifted: SimWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`fleetloop hub regimes` against a real API: v1 knows one regime, the field runs in three; read-only."""
    hub_settings = HubSettings(tokens=TOKENS, mqtt_password=SecretStr("secret"))
    for key in [k for k in os.environ if k.startswith("FLEETLOOP_HUB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FLEETLOOP_HUB_TOKEN", TOKEN["viewer"])
    versions = [r.version for r in fleet.store.model_versions()]
    with serve(create_app(hub_settings, fleet.store, clock=lambda: NOW, registry=fleet.registry)) as url:
        monkeypatch.setenv("FLEETLOOP_HUB_URL", url)
        assert main(["hub", "regimes", "--json"]) == 0
        body = json.loads(capsys.readouterr().out)
        assert main(["hub", "regimes"]) == 0
        text = capsys.readouterr().out
    with serve(create_app(hub_settings, drifted.store, clock=drifted.clock, registry=drifted.registry)) as url:
        set_1 = httpx.get(f"{url}/regimes", headers={"Authorization": f"Bearer {TOKEN['viewer']}"})
    assert body["version"] == "v1" and body["settings"] == ["op1", "op2", "op3"]
    field = body["field"]
    assert (field["devices"], field["windows"], field["readings"]) == (4, fleet.windows, fleet.readings)
    (only,) = body["active"]  # v1's one regime: every field reading is nearest it
    assert only["fitted_readings"] == sum(fleet.v1.regimes.counts) and only["field_readings"] == fleet.readings  # type: ignore[union-attr]
    assert field["far_share"] > 0.6  # two of the field's three operating points are far from v1's
    assert len(body["found"]) == len(REGIME_SETTINGS)
    assert np.allclose(sorted(r["centroid"][0] for r in body["found"]), REGIME_SETTINGS[:, 0], atol=0.01)
    assert "active v1: 1 regime(s) over op1, op2, op3" in text and "the field alone gives 3 regime(s)" in text
    assert f"{field['far_share']:.1%} far from every active regime" in text
    assert [r.version for r in fleet.store.model_versions()] == versions  # read-only: nothing registered
    assert set_1.status_code == 409 and "feature set 1" in set_1.json()["detail"]


def test_auto_learns_the_regimes_once_and_later_rows_of_the_old_version_are_restated_or_dropped(
        tmp_path: Path) -> None:
    """``regimes = "auto"``: v1's one regime leaves most field readings far away, so the first retrain learns the
    field's; from that version the field is near, so the next keeps them. That next retrain must not train on the
    features v1 computed under its one regime, though they are as wide: rows with a raw window are restated under
    the new version's statistics, the rest dropped and counted."""
    own = make_fleet(tmp_path)
    try:
        learned = service(own, settings(regimes="auto")).retrain_now(actor="test", reason="auto", now=NOW)
        assert learned.status == "succeeded", learned.error
        v2 = learned.result_version or ""
        v2_manifest = own.registry.manifest(v2)
        assert v2_manifest is not None and v2_manifest.regimes is not None
        assert v2_manifest.training.params["regimes_from"] == "field" and v2_manifest.regimes.n_regimes == 3
        assert v2_manifest.training.params["regimes_far_share"] > 0.6  # two of three operating points unseen
        own.registry.activate(v2, actor="test", action="activate", reason="the field's regimes")
        job = service(own, settings(regimes="auto")).retrain_now(actor="test", reason="more labels", now=NOW + 10)
        assert job.status == "succeeded", job.error
        m = own.registry.manifest(job.result_version or "")
        assert m is not None and m.parent_version == v2
        assert m.regimes == v2_manifest.regimes and "regimes_from" not in m.training.params  # the parent's kept
        assert m.training.params["regimes_far_share"] <= 0.1
        assert job.details["counts"]["field_other_inputs"] == own.unwindowed  # v1's rows without a raw window
        assert m.training.params["n_field"] + m.training.params["n_eval"] == len(own.y) - own.unwindowed
    finally:
        own.store.close()

"""``GET /performance``: realized figures per version and scope from the latest label set, the label-free estimates
from the random samples each version scored and its calibration, and the estimate's error once labels are in; the
console and the CLI show the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetloop.cli import main
from hub.labels.service import validate_and_save
from hub.training.estimate import rates
from models.version import read_version, write_version
from shared.manifest import Calibration
from shared.messages import Annotation
from shared.wire import replace
from tests.hub.api.conftest import T0, TOKEN, Hub, anomaly, online, sample
from tests.hub.console.conftest import sign_in

# score -> probability: the score itself (a perfectly calibrated model), fitted on 200 slice rows
IDENTITY = Calibration(x=[0.0, 1.0], y=[0.0, 1.0], fitted_on="eval", n=200, n_positive=40)
SCORES = np.round(np.linspace(0.02, 0.98, 40), 4)  # 40 random-sample windows; threshold 0.5: 20 alarms


def test_estimates_before_labels_then_realized_figures_and_the_error(
        hub: Hub, tmp_path: Path, initial_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest, onnx = read_version(initial_model_dir)
    write_version(tmp_path / "v1", onnx, replace(manifest, calibration=IDENTITY))
    assert hub.services.registry is not None
    hub.services.registry.register(tmp_path / "v1", actor="test", reason="calibrated", status="active")
    hub.ingest(online("pump-1", site="site-a"), online("pump-2", site="site-b"))
    hub.clock.now = T0 + 7200 * len(SCORES)  # one window every 2 h: each its own evidence block
    traces = [f"t-{i:02d}" for i in range(len(SCORES))]
    # as agents send the random slice: alarmed windows as anomalies marked `sampled`, the others as samples
    hub.ingest(*(anomaly("pump-1" if i % 2 else "pump-2", ts=T0 + 7200 * i, score=float(s), trace_id=t, sampled=True)
                 if s >= 0.5 else sample("pump-1" if i % 2 else "pump-2", ts=T0 + 7200 * i, score=float(s), trace_id=t)
                 for i, (s, t) in enumerate(zip(SCORES, traces, strict=True))))
    viewer = hub.client("viewer")
    assert hub.client().get("/performance").status_code == 401

    body = viewer.get("/performance").json()
    assert body["label_set_id"] is None and body["figures"] == [] and body["events"] == []
    est = {(e["version"], e["scope"]): e for e in body["estimates"]}
    assert set(est) == {("v1", "fleet"), ("v1", "cohort:site-a"), ("v1", "cohort:site-b")}
    fleet = est[("v1", "fleet")]
    alarm = SCORES >= 0.5
    expected = rates(SCORES[alarm].sum(), (1 - SCORES[alarm]).sum(), SCORES[~alarm].sum(), (1 - SCORES[~alarm]).sum())
    assert (fleet["status"], fleet["samples"], fleet["alarms"]) == ("ok", 40, 20)
    assert fleet["estimated"] == pytest.approx(expected) and fleet["expected_failures"] == pytest.approx(SCORES.sum())
    assert fleet["realized"] is None and fleet["error"] is None and fleet["calibrated_on"] == "eval"
    assert est[("v1", "cohort:site-a")]["status"] == "too_few_samples"  # 20 windows, fewer than 30

    # Technicians confirm: failures are the windows scored 0.7 and up; the realized figures and the error follow.
    hub.ingest(*(Annotation(device_id="pump-1" if i % 2 else "pump-2", ts=T0 + 7200 * i + 30, trace_id=t,
                            annotation_id=f"a-{t}", label="fault" if s >= 0.7 else "no_fault",
                            technician_id="tech-1", signal="confirmed", model_version="v1")
                 for i, (s, t) in enumerate(zip(SCORES, traces, strict=True))))
    validate_and_save(hub.store, hub.services.settings.labels, now=hub.clock())
    body = viewer.get("/performance", params={"version": "v1"}).json()
    assert body["label_set_id"] is not None and {f["scope"] for f in body["figures"]} >= {"fleet"}
    fleet = next(e for e in body["estimates"] if e["scope"] == "fleet")
    realized = fleet["realized"]
    assert realized is not None and fleet["labels"] == 40
    assert realized["recall"] == 1.0 and realized["false_alarm_rate"] == pytest.approx(8 / 28)  # 0.5-0.7 alarmed
    assert fleet["error"]["f1"] == pytest.approx(fleet["estimated"]["f1"] - realized["f1"])
    assert viewer.get("/performance", params={"version": "v9"}).json()["estimates"] == []

    # the console's drift page shows the same beside drift: estimate, realized figures and the error
    page = sign_in(hub, "viewer").get("/console/drift").text
    row = page[page.index('<tr data-version="v1" data-scope="fleet">'):]
    row = row[:row.index("</tr>")]
    shown = [fleet["estimated"]["f1"], fleet["estimated"]["recall"], fleet["estimated"]["false_alarm_rate"],
             realized["f1"], realized["recall"], realized["false_alarm_rate"]]
    assert [f"<td>{v:.3f}</td>" in row for v in shown] == [True] * 6 and "<td>40</td>" in row
    assert f"<td>{fleet['error']['f1']:+.3f}</td>" in row and "ok (40 windows)" in row

    # the CLI prints the same, one row per version and scope
    monkeypatch.setenv("FLEETLOOP_HUB_URL", hub.url)
    monkeypatch.setenv("FLEETLOOP_HUB_TOKEN", TOKEN["viewer"])
    capsys.readouterr()
    assert main(["hub", "performance", "--version", "v1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["VERSION", "SCOPE", "ESTIMATE", "SAMPLES", "EST_F1"]
    fleet_row = next(line.split() for line in lines if line.split()[:2] == ["v1", "fleet"])
    assert fleet_row[2:5] == ["ok", "40", f"{fleet['estimated']['f1']:.3f}"]
    assert f"{fleet['error']['f1']:+.3f}" in fleet_row

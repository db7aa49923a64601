"""``/drift/reference``: an operator (re)takes a version's drift reference from a window of live traffic, through
the real FastAPI app on a real store; the drift job then compares with it, and the audit trail records it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.manifest import MANIFEST_FILE
from shared.messages import Status
from tests.hub.api.conftest import T0, Hub, running_hub
from tests.hub.drift.simfleet import CALIBRATION, SITE, Windows, calibrated_windows

START = T0 - 100_000  # the simulated fleet's first stats; the hub's clock reads T0 + 3600


@pytest.fixture(scope="module")
def windows(initial_model_dir: Path) -> Windows:
    return calibrated_windows(initial_model_dir, START)


@pytest.fixture
def fleet_hub(tmp_path: Path, initial_model_dir: Path, windows: Windows) -> Iterator[Hub]:
    """A hub whose models directory holds v1's manifest, with the calibrated fleet's stats ingested."""
    (tmp_path / "models" / "v1").mkdir(parents=True)
    shutil.copy(initial_model_dir / MANIFEST_FILE, tmp_path / "models" / "v1" / MANIFEST_FILE)
    with running_hub(tmp_path / "hub.db") as hub:
        hub.ingest(*[Status(device_id=d, ts=START, state="online", site=SITE[d], asset_type="pump",
                            model_version="v1") for d in CALIBRATION])
        hub.ingest(*windows.reference, *windows.clean)
        yield hub


def body(w: Windows, **extra: object) -> dict[str, object]:
    start, end = w.reference_span
    return {"version": "v1", "start": start, "end": end, "devices": None, "reason": "commissioning, checked", **extra}


def test_an_operator_takes_a_reference_and_drift_then_compares_with_it(fleet_hub: Hub, windows: Windows) -> None:
    hub = fleet_hub
    assert hub.services.drift is not None
    before = {r["scope"]: r for r in hub.services.drift.run(hub.clock.now)}
    assert before["fleet@v1"]["verdict"] == "drift"  # a calibrated fleet against the manifest's reference

    viewer, operator = hub.client("viewer"), hub.client("operator")
    assert viewer.post("/drift/reference", json=body(windows)).status_code == 403
    assert viewer.get("/drift/reference/v1").json()["source"] == "manifest"

    answer = operator.post("/drift/reference", json=body(windows, actor="ana"))
    assert answer.status_code == 201, answer.text
    ref = answer.json()
    assert (ref["version"], ref["actor"], ref["reason"], ref["ts"]) == ("v1", "operator:ana", "commissioning, checked",
                                                                         hub.clock.now)
    assert (ref["start"], ref["end"]) == windows.reference_span
    assert ref["windows"] == sum(s.windows for s in windows.reference)
    assert ref["summary"]["n_devices"] == 6 and ref["summary"]["stats_rows"] == len(windows.reference)
    assert len(ref["features"]) == 36 and sum(ref["features"]["temperature.mean"]) == ref["windows"]

    after = {r["scope"]: r for r in hub.services.drift.run(hub.clock.now)}
    assert after["fleet@v1"]["verdict"] == "no_drift", after["fleet@v1"]["reason"]
    stored = viewer.get("/drift", params={"scope": "fleet@v1", "limit": 1}).json()[0]
    assert stored["report"]["reference"]["id"] == ref["id"] and stored["report"]["reference"]["source"] == "fleet"

    audit = [a for a in hub.store.model_audit(version="v1") if a.action == "drift_reference"]
    assert [(a.actor, a.reason, a.details["reference_id"], a.details["windows"]) for a in audit] == [
        ("operator:ana", "commissioning, checked", ref["id"], ref["windows"])]


def test_a_retaken_reference_becomes_current_and_the_history_keeps_both(fleet_hub: Hub, windows: Windows) -> None:
    operator = fleet_hub.client("operator")
    first = operator.post("/drift/reference", json=body(windows)).json()
    devices = ["dev-0", "dev-4"]
    second = operator.post("/drift/reference", json=body(windows, devices=devices, device_baselines=True,
                                                          reason="two machines only")).json()
    assert second["devices"] == devices and second["device_baselines"] is True
    assert sorted(second["summary"]["devices_windows"]) == devices

    got = fleet_hub.client("viewer").get("/drift/reference/v1").json()
    assert got["source"] == "fleet" and got["current"]["id"] == second["id"]
    assert got["current"]["features"]["pressure.max"] == second["features"]["pressure.max"]
    assert [(h["id"], h["reason"], h["features"]) for h in got["history"]] == [
        (second["id"], "two machines only", None), (first["id"], "commissioning, checked", None)]


def test_bad_requests_are_refused_with_a_reason(fleet_hub: Hub, windows: Windows) -> None:
    operator = fleet_hub.client("operator")
    unknown = operator.post("/drift/reference", json=body(windows, version="v9"))
    assert unknown.status_code == 404 and "unknown model version 'v9'" in unknown.json()["detail"]
    assert fleet_hub.client("viewer").get("/drift/reference/v9").status_code == 404
    empty = operator.post("/drift/reference", json=body(windows, start=START - 5000, end=START - 1000))
    assert empty.status_code == 400 and empty.json()["detail"].startswith("no healthy stats of v1")
    backwards = operator.post("/drift/reference", json=body(windows, start=START + 10, end=START))
    assert backwards.status_code == 422
    assert operator.post("/drift/reference", json=body(windows, reason="")).status_code == 422
    assert fleet_hub.store.drift_reference("v1") is None

"""Taking a drift reference from the fleet, on a real SQLite store: `DriftService.take_reference`, the reports
against it, device baselines, the automatic reference and the audit trail.

The fleet is `tests.hub.drift.simfleet`'s: six simulated pumps calibrated each their own way, scored by the
real initial model, their stats folded by the agent's own accumulator.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hub.app.settings import DriftSettings
from hub.drift.baselines import Baselines, baseline_reports
from hub.drift.fold import device_sketches, slices
from hub.drift.service import AUTO_ACTOR, DriftService, format_table
from hub.errors import DriftReferenceError, RegistryError
from hub.registry.references import ReferenceLibrary
from hub.store import IngestRecord
from hub.store.sqlite import SqliteHubStore
from shared.manifest import MANIFEST_FILE
from shared.messages import Stats, Status
from shared.wire import replace as wire_replace
from sim.drift import SensorOffset
from tests.hub.drift.simfleet import (
    CALIBRATION,
    INJECTED,
    SITE,
    STEPS,
    SimMachine,
    Windows,
    calibrated_fleet,
    calibrated_windows,
    fleet_stats,
)

T0 = 1_700_000_000.0
DEVICES = sorted(CALIBRATION)
WINDOW_S = STEPS  # the drift job's window: one of the simulated windows


@pytest.fixture(scope="module")
def windows(initial_model_dir: Path) -> Windows:
    return calibrated_windows(initial_model_dir, T0)


@pytest.fixture
def models_dir(tmp_path: Path, initial_model_dir: Path) -> Path:
    (tmp_path / "models" / "v1").mkdir(parents=True)
    shutil.copy(initial_model_dir / MANIFEST_FILE, tmp_path / "models" / "v1" / MANIFEST_FILE)
    return tmp_path / "models"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


def ingest(store: SqliteHubStore, stats: Sequence[Stats]) -> None:
    statuses = [Status(device_id=d, ts=T0 - 60, state="online", site=SITE[d], asset_type="pump", model_version="v1")
                for d in DEVICES]
    result = store.ingest_batch([IngestRecord(m, T0) for m in [*statuses, *stats]])
    assert not result.rejected


def service(store: SqliteHubStore, models_dir: Path, **settings: Any) -> DriftService:
    return DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=WINDOW_S, **settings))


def verdicts(reports: Sequence[dict[str, Any]]) -> dict[str, str]:
    return {r["scope"]: r["verdict"] for r in reports}


def later_now(w: Windows) -> float:
    return w.later_span[1]


def test_after_taking_a_reference_from_the_fleet_the_fleet_no_longer_reads_as_drifted(
    store: SqliteHubStore, models_dir: Path, windows: Windows
) -> None:
    ingest(store, [*windows.reference, *windows.clean])
    drift = service(store, models_dir)
    now = later_now(windows)

    before = {r["scope"]: r for r in drift.run(now)}
    assert before["fleet@v1"]["verdict"] == "drift" and len(before["fleet@v1"]["drifted_features"]) >= 20
    assert all(before[f"device:{d}@v1"]["verdict"] == "drift" for d in DEVICES)
    assert before["fleet@v1"]["reference"] == {"source": "manifest"}

    start, end = windows.reference_span
    ref = drift.take_reference("v1", start, end, reason="commissioning week, all machines checked",
                               actor="operator:ana", now=now)
    assert ref.windows == sum(s.windows for s in windows.reference)
    assert ref.summary["n_devices"] == 6 and ref.summary["stats_rows"] == len(windows.reference)
    assert not ref.device_baselines

    after = {r["scope"]: r for r in drift.run(now)}
    assert after["fleet@v1"]["verdict"] == "no_drift", after["fleet@v1"]["reason"]
    assert after["cohort:site-a/pump@v1"]["verdict"] == after["cohort:site-b/pump@v1"]["verdict"] == "no_drift"
    assert after["fleet@v1"]["reference"] == {"source": "fleet", "id": ref.id, "start": start, "end": end, "ts": now}

    audit = [a for a in store.model_audit(version="v1") if a.action == "drift_reference"]
    assert len(audit) == 1
    a = audit[0]
    assert (a.actor, a.reason, a.ts) == ("operator:ana", "commissioning week, all machines checked", now)
    assert a.details["reference_id"] == ref.id and a.details["windows"] == ref.windows
    assert (a.details["start"], a.details["end"], a.details["stats_rows"]) == (start, end, len(windows.reference))


@pytest.mark.parametrize("via", ["request", "setting"])
def test_with_device_baselines_an_injected_offset_is_flagged_on_those_two_devices_only(
    store: SqliteHubStore, models_dir: Path, windows: Windows, via: str
) -> None:
    ingest(store, [*windows.reference, *windows.injected])
    drift = service(store, models_dir, device_baselines=via == "setting")
    now = later_now(windows)
    drift.take_reference("v1", *windows.reference_span, reason="healthy", actor="operator", now=now,
                         device_baselines=True if via == "request" else None)

    reports = drift.run(now)
    drifted = sorted(r["scope"] for r in reports if r["verdict"] == "drift")
    assert drifted == [f"device:{d}@v1" for d in INJECTED]
    by_scope = {r["scope"]: r for r in reports}
    assert by_scope["device:dev-1@v1"]["reference"]["source"] == "device"
    assert by_scope["cohort:site-a/pump@v1"]["reference"]["source"] == "cohort"
    assert by_scope["fleet@v1"]["reference"]["source"] == "fleet"
    assert "own baselines for 2 cohort(s), 6 device(s)" in format_table(reports)


def test_without_device_baselines_each_calibration_reads_as_device_drift(
    store: SqliteHubStore, models_dir: Path, windows: Windows
) -> None:
    ingest(store, [*windows.reference, *windows.clean])
    drift = service(store, models_dir)
    drift.take_reference("v1", *windows.reference_span, reason="healthy", actor="operator", now=later_now(windows))
    reports = {r["scope"]: r for r in drift.run(later_now(windows))}
    assert reports["device:dev-2@v1"]["verdict"] == "drift"  # its temperature sensor reads 1.5 high: calibration


def test_alarming_periods_and_devices_with_open_drift_are_left_out(
    store: SqliteHubStore, models_dir: Path, windows: Windows
) -> None:
    alarming = [wire_replace(s, device_id="dev-9", msg_id=f"alarm-{i}", anomalies=s.windows)
                for i, s in enumerate(windows.reference[:4])]
    ingest(store, [*windows.reference, *alarming, *windows.injected])
    drift = service(store, models_dir, device_baselines=True)
    now = later_now(windows)
    first = drift.take_reference("v1", *windows.reference_span, reason="healthy", actor="operator", now=now)
    assert first.summary["excluded"]["alarming_periods"] == 4
    assert "dev-9" not in first.summary["devices_windows"]

    drift.run(now)  # dev-1 and dev-4 drift against their own baselines
    retaken = drift.take_reference("v1", *windows.later_span, reason="after the recalibration", actor="operator",
                                   now=now + 1)
    assert retaken.summary["excluded"]["open_drift_devices"] == list(INJECTED)
    assert sorted(retaken.summary["devices_windows"]) == sorted(set(DEVICES) - set(INJECTED))
    current, history = drift.reference("v1")
    assert current is not None and current.id == retaken.id
    assert [r.id for r in history] == [retaken.id, first.id] and history[0].counts == {}


def test_a_reference_is_refused_without_a_manifest_or_enough_healthy_windows(
    store: SqliteHubStore, models_dir: Path, windows: Windows
) -> None:
    ingest(store, windows.reference[:1])  # one period: 500 windows of dev-0
    drift = service(store, models_dir, min_samples=1000)
    start, end = windows.reference_span
    with pytest.raises(RegistryError, match="unknown model version 'v9'"):
        drift.take_reference("v9", start, end, reason="r", actor="operator", now=end)
    with pytest.raises(DriftReferenceError, match="no healthy stats of v1"):
        drift.take_reference("v1", end, end + 100, reason="r", actor="operator", now=end + 200)
    with pytest.raises(DriftReferenceError, match=r"fewer than drift\.min_samples"):
        drift.take_reference("v1", start, end, reason="r", actor="operator", now=end)
    with pytest.raises(DriftReferenceError, match="must end after it starts"):
        drift.take_reference("v1", end, start, reason="r", actor="operator", now=end)
    assert store.drift_reference("v1") is None and store.model_audit(version="v1") == []


@pytest.mark.timeout(60)
def test_a_window_far_wider_than_the_stats_reads_only_where_they_lie(
    store: SqliteHubStore, models_dir: Path, windows: Windows
) -> None:
    """Found by the schema fuzz: ``[0, 2e9)`` was read in 3.3 million slices of 600 s (an API worker busy for
    hours), and ``[-1e300, …)`` forever (600 s is lost in the rounding of -1e300)."""
    ingest(store, [*windows.reference, *windows.clean])
    start, end = windows.reference_span
    now = later_now(windows)
    exact = service(store, models_dir).take_reference("v1", start, end, reason="r", actor="operator", now=now)
    for wide_start in (0.0, -1e300):
        wide = service(store, models_dir).take_reference("v1", wide_start, 1e300, reason="r", actor="operator",
                                                         now=now)
        assert (wide.start, wide.end) == (wide_start, 1e300)  # stored as asked: only the reading is narrowed
        assert wide.summary["stats_rows"] == len(windows.reference) + len(windows.clean)
        assert wide.windows == exact.windows + sum(s.windows for s in windows.clean)


def test_slices_refuse_a_step_lost_in_rounding() -> None:
    assert list(slices(0.0, 1300.0, 600.0)) == [(0.0, 600.0), (600.0, 1200.0), (1200.0, 1300.0)]
    with pytest.raises(ValueError, match="no progress"):
        list(slices(-1e300, 0.0, 600.0))


def test_the_reference_is_taken_automatically_from_a_versions_first_hours_when_enabled(
    store: SqliteHubStore, models_dir: Path, windows: Windows
) -> None:
    ingest(store, windows.reference)
    span = 3000.0  # the first 3,000 s of v1's stats
    off = service(store, models_dir)
    assert off.run(T0 + 4000) and store.drift_reference("v1") is None  # off by default

    drift = service(store, models_dir, auto_reference_s=span)
    drift.run(T0 + span - 1)
    assert store.drift_reference("v1") is None  # its first hours are not over yet
    reports = {r["scope"]: r for r in drift.run(T0 + 4000)}

    ref = store.drift_reference("v1")
    assert ref is not None and (ref.actor, ref.start, ref.end) == (AUTO_ACTOR, T0, T0 + span)
    assert "drift.auto_reference_s" in ref.reason
    assert reports["fleet@v1"]["reference"]["id"] == ref.id
    assert reports["fleet@v1"]["verdict"] == "no_drift"
    assert [a.actor for a in store.model_audit(version="v1") if a.action == "drift_reference"] == [AUTO_ACTOR]
    drift.run(T0 + 5000)
    assert len(store.drift_references("v1")) == 1  # once


def test_the_table_shows_the_threshold_the_reports_used(
    store: SqliteHubStore, models_dir: Path, windows: Windows
) -> None:
    ingest(store, windows.clean)
    reports = service(store, models_dir, psi_threshold=0.5, alpha=0.05).run(later_now(windows))
    table = format_table(reports)
    assert "TOP DRIFTED FEATURES (PSI ≥ 0.5)" in table.splitlines()[0]
    assert "drifted: PSI ≥ 0.5 and BH-adjusted p ≤ 0.05 (chi2), with at least 200 windows on each side" in table
    assert "v1 compared with: the manifest's reference" in table
    bands = [(f["band"], f["psi"]) for r in reports for f in r["features"]]
    assert all(psi >= 0.5 for band, psi in bands if band == "significant")
    assert any(band != "significant" and 0.2 <= psi < 0.5 for band, psi in bands)




YOUNG = 2_000  # readings per device: a young fleet's short reference, a machine life or two
RECALIBRATED = ("dev-0", "dev-3")


def young_fleet(drifted: Sequence[str] = ()) -> list[SimMachine]:
    """The calibrated pumps; `drifted` ones read vibration 2 mm/s low from reading YOUNG on (the demo's drift)."""
    offset = SensorOffset(start_t=YOUNG, sensor="vibration", offset=-2.0)
    return [replace(m, drifts=[offset]) if m.device_id in drifted else m for m in calibrated_fleet()]


@pytest.fixture(scope="module")
def young(initial_model_dir: Path) -> dict[str, list[Stats]]:
    """A short reference window, then a short clean one and a short one with the vibration offset on RECALIBRATED."""
    later = T0 + 2 * YOUNG
    return {"reference": fleet_stats(initial_model_dir, young_fleet(), steps=YOUNG, t0=T0, period=40),
            "clean": fleet_stats(initial_model_dir, young_fleet(), steps=YOUNG, start=YOUNG, t0=later, period=40),
            "injected": fleet_stats(initial_model_dir, young_fleet(RECALIBRATED), steps=YOUNG, start=YOUNG, t0=later,
                                    period=40)}


def young_reports(store: SqliteHubStore, models_dir: Path, stats: list[Stats]) -> tuple[Any, list[dict[str, Any]]]:
    ingest(store, stats)
    drift = DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=YOUNG))
    now = T0 + 3 * YOUNG
    ref = drift.take_reference("v1", T0, T0 + YOUNG, reason="commissioning", actor="operator", now=now,
                               device_baselines=True)
    return ref, drift.run(now)


def flagged(reports: list[dict[str, Any]], kind: str = "device:") -> list[str]:
    return sorted(r["scope"].split("@")[0] for r in reports if r["verdict"] == "drift" and r["scope"].startswith(kind))


def test_on_a_young_fleet_counting_windows_at_their_dispersion_spares_most_healthy_devices(
    store: SqliteHubStore, models_dir: Path, young: dict[str, list[Stats]]
) -> None:
    """Against its own baseline alone, at the product's PSI 0.2, a healthy machine's next short window differs
    "significantly" on many features (windows overlap; its traffic wanders between lives and regimes): every device
    reads as drifted. Counted at its dispersion (measured between slices of its reference window) two of six still
    do on these seeds: a reference of one or two machine lives cannot know all of a machine's own wander."""
    ref, reports = young_reports(store, models_dir, [*young["reference"], *young["clean"]])
    assert set(ref.counts["dispersions"]) == {"fleet", *(f"device:{d}" for d in DEVICES),
                                              "cohort:site-a/pump", "cohort:site-b/pump"}
    assert all(v > 1 for v in ref.summary["max_dispersion"].values())
    assert flagged(reports) == ["device:dev-1", "device:dev-4"], reports

    manifest = ReferenceLibrary(models_dir).manifest("v1")
    assert manifest is not None
    baselines = Baselines.from_counts(ref.counts, manifest.reference)
    now = T0 + 3 * YOUNG
    sketches, _ = device_sketches(store.stats_between(now - YOUNG, now), manifest)
    without = baseline_reports(replace(baselines, dispersions={}), sketches, {}, manifest.feature_names, own=True)
    assert sorted(r.scope for r, _ in without if r.verdict == "drift" and r.scope.startswith("device:")) == [
        f"device:{d}" for d in DEVICES]


def test_on_a_young_fleet_a_recalibrated_sensor_is_located(
    store: SqliteHubStore, models_dir: Path, young: dict[str, list[Stats]]
) -> None:
    _, reports = young_reports(store, models_dir, [*young["reference"], *young["injected"]])
    located = flagged(reports)
    assert {f"device:{d}" for d in RECALIBRATED} <= set(located), reports
    drifted = {r["scope"].split("@")[0]: r["drifted_features"] for r in reports if r["verdict"] == "drift"}
    assert all(any(f.startswith("vibration.") for f in drifted[f"device:{d}"]) for d in RECALIBRATED), drifted

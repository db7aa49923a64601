"""The drift job on a real SQLite store and a real manifest: stats in, stored reports, events and gauges out."""

from __future__ import annotations

import doctest
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleetloop.devbroker import HUB_USER, DevBroker
from hub.app.metrics import HubMetrics
from hub.app.settings import DriftSettings
from hub.drift import Sketch, merge_sketches
from hub.drift import service as drift_service
from hub.drift.service import DriftService, Skipped, cohort_of, device_sketches, format_table
from hub.mqtt import IngestWorker
from hub.registry.references import ReferenceLibrary
from hub.store import DRIFT_EVENT, Device, IngestRecord
from hub.store.sqlite import SqliteHubStore
from shared.codec import encode
from shared.manifest import MANIFEST_FILE, ModelManifest, Reference, dump_manifest
from shared.messages import Stats, Status
from shared.topics import Kind, Topics
from shared.wire import replace
from tests.fixtures.broker import Clients, publish

T0 = 1_700_000_000.0
WINDOW_S = 3600.0
SHIFTED = "temperature.mean"
# dev-0…2 at site-a (pumps), dev-3…5 at site-b (fans).
SITES = {f"dev-{i}": ("site-a", "pump") if i < 3 else ("site-b", "fan") for i in range(6)}


# -- helpers ---------------------------------------------------------------------------------------
def proportions(counts: Sequence[int], shift: int = 0) -> np.ndarray:
    """A reference histogram as probabilities, with every bin's mass moved `shift` bins up (clipped)."""
    p = np.asarray(counts, dtype=np.float64) / sum(counts)
    if shift:
        moved = np.zeros_like(p)
        for i, mass in enumerate(p):
            moved[min(i + shift, len(p) - 1)] += mass
        p = moved
    return p


def draw_stats(
    rng: np.random.Generator,
    manifest: ModelManifest,
    device: str,
    period_end: float,
    windows: int = 200,
    *,
    shift: dict[str, int] | None = None,
    version: str | None = None,
) -> Stats:
    """A Stats message as an agent of `manifest` sends it: `windows` windows drawn from the reference."""
    ref = manifest.reference
    shift = shift or {}
    feature_hist = [
        rng.multinomial(windows, proportions(hist, shift.get(name, 0))).tolist()
        for name, hist in zip(manifest.feature_names, ref.histograms, strict=True)
    ]
    score_hist = rng.multinomial(windows, proportions(ref.score_histogram)).tolist()
    lower = [0.0, *ref.score_bin_edges]
    anomalies = sum(n for n, edge in zip(score_hist, lower, strict=True) if edge >= manifest.threshold)
    return Stats(device_id=device, ts=period_end, model_version=version or manifest.version,
                 period_start=period_end - 600, period_end=period_end, windows=windows, anomalies=anomalies,
                 samples=0, bad_readings=0, bad_rows=0, inference_errors=0, nan_scores=0,
                 feature_hist=feature_hist, score_hist=score_hist, latency_p50_ms=1.0, latency_p99_ms=2.5)


def status(device: str, ts: float = T0 - 7200) -> Status:
    site, asset = SITES[device]
    return Status(device_id=device, ts=ts, state="online", site=site, asset_type=asset, model_version="v1")


def ingest(store: SqliteHubStore, messages: Sequence[Any]) -> None:
    result = store.ingest_batch([IngestRecord(m, T0) for m in messages])
    assert not result.rejected


def fleet(
    store: SqliteHubStore,
    manifest: ModelManifest,
    *,
    seed: int,
    rows: int = 3,
    windows: int = 200,
    shifted: Sequence[str] = (),
) -> None:
    """Six registered devices, each `rows` stats in the last hour; `shifted` devices have SHIFTED moved up."""
    rng = np.random.default_rng(seed)
    messages: list[Any] = [status(d) for d in SITES]
    for device in SITES:
        shift = {SHIFTED: 3} if device in shifted else None
        messages += [draw_stats(rng, manifest, device, T0 - 600 * (k + 1), windows, shift=shift) for k in range(rows)]
    ingest(store, messages)


def by_scope(reports: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["scope"]: r for r in reports}


SCOPES = ["fleet@v1", "cohort:site-a/pump@v1", "cohort:site-b/fan@v1", *(f"device:dev-{i}@v1" for i in range(6))]


# -- fixtures: models_dir, manifest, store (tests/hub/drift/conftest.py) ----------------------------
def service(store: SqliteHubStore, models_dir: Path, metrics: HubMetrics | None = None, **kw: Any) -> DriftService:
    return DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=WINDOW_S, **kw), metrics=metrics)


# -- drift decisions -------------------------------------------------------------------------------
def test_stats_drawn_from_the_reference_do_not_drift(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest
) -> None:
    fleet(store, manifest, seed=1)
    metrics = HubMetrics()
    reports = service(store, models_dir, metrics).run(T0)

    assert [r["scope"] for r in reports] == SCOPES
    assert {r["verdict"] for r in reports} == {"no_drift"}
    assert all(r["drifted_features"] == [] and r["model_version"] == "v1" for r in reports)
    assert by_scope(reports)["fleet@v1"]["n_current"] == 6 * 3 * 200
    assert by_scope(reports)["cohort:site-a/pump@v1"]["n_current"] == 3 * 3 * 200
    assert (reports[0]["window_start"], reports[0]["window_end"]) == (T0 - WINDOW_S, T0)
    stored = store.drift_reports()
    assert sorted(r.scope for r in stored) == sorted(SCOPES)
    assert {r.id for r in stored} == {r["report_id"] for r in reports}
    assert store.events(kind=DRIFT_EVENT) == []

    exposition = metrics.render()[0].decode()
    assert f'fleetloop_hub_drift_psi{{feature="{SHIFTED}",scope="fleet@v1"}}' in exposition
    assert 'fleetloop_hub_drift_detected{scope="cohort:site-b/fan@v1"} 0.0' in exposition
    assert "device:" not in exposition  # one series per device would explode the cardinality


def test_a_shifted_feature_drifts_where_it_is_shifted_and_records_events(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest
) -> None:
    # Four of six devices: all of site-a, one of site-b.
    fleet(store, manifest, seed=2, shifted=["dev-0", "dev-1", "dev-2", "dev-3"])
    metrics = HubMetrics()
    reports = by_scope(service(store, models_dir, metrics).run(T0))

    drifting = ["fleet@v1", "cohort:site-a/pump@v1", *(f"device:dev-{i}@v1" for i in range(4))]
    for scope in drifting:
        assert reports[scope]["verdict"] == "drift", reports[scope]["reason"]
        assert reports[scope]["drifted_features"] == [SHIFTED]
        assert reports[scope]["reason"] == f"drift in 1 of 36 features: {SHIFTED}"
    # One shifted device in three: material for that device, diluted below the PSI threshold for its cohort.
    site_b = reports["cohort:site-b/fan@v1"]
    assert site_b["verdict"] == "no_drift"
    assert site_b["reason"].startswith("no drift: largest PSI 0.1") and SHIFTED in site_b["reason"]
    assert site_b["reason"].endswith("1 feature(s) significant after BH but immaterial")
    assert [reports[f"device:dev-{i}@v1"]["verdict"] for i in (4, 5)] == ["no_drift", "no_drift"]

    events = store.events(kind=DRIFT_EVENT)
    assert sorted(e.payload["scope"] for e in events) == sorted(drifting)
    assert all(e.payload["drifted_features"] == [SHIFTED] for e in events)
    assert {e.payload["report_id"] for e in events} == {reports[s]["report_id"] for s in drifting}

    exposition = metrics.render()[0].decode()
    assert 'fleetloop_hub_drift_detected{scope="fleet@v1"} 1.0' in exposition
    assert 'fleetloop_hub_drift_detected{scope="cohort:site-b/fan@v1"} 0.0' in exposition
    fleet_psi = next(f["psi"] for f in reports["fleet@v1"]["features"] if f["name"] == SHIFTED)
    assert f'fleetloop_hub_drift_psi{{feature="{SHIFTED}",scope="fleet@v1"}} {fleet_psi!r}' in exposition

    table = format_table(list(reports.values()))
    assert table.splitlines()[1].startswith("fleet@v1               drift        3600  temperature.mean 0.")
    assert "(largest: temperature.mean 0.1" in table  # site-b's cohort line


def test_too_few_windows_give_insufficient_data_and_no_event(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest
) -> None:
    fleet(store, manifest, seed=3, rows=1, windows=30, shifted=list(SITES))  # shifted, but only 180 windows
    reports = service(store, models_dir).run(T0)
    assert [r["verdict"] for r in reports] == ["insufficient_data"] * len(SCOPES)
    assert by_scope(reports)["fleet@v1"]["reason"] == "insufficient data: 180 current windows, fewer than 200"
    assert store.events(kind=DRIFT_EVENT) == []
    assert len(store.drift_reports()) == len(SCOPES)  # stored all the same: the history shows the gap


def test_settings_decide_the_window_and_thresholds(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest
) -> None:
    fleet(store, manifest, seed=4, rows=3)  # period ends T0-600, T0-1200, T0-1800
    rng = np.random.default_rng(4)
    ingest(store, [draw_stats(rng, manifest, "dev-0", T0 - WINDOW_S - 1), draw_stats(rng, manifest, "dev-0", T0)])
    half_hour = DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=1500, min_samples=3000))
    reports = by_scope(half_hour.run(T0))
    assert reports["fleet@v1"]["n_current"] == 6 * 2 * 200  # [T0-1500, T0): two rows per device
    assert reports["fleet@v1"]["verdict"] == "insufficient_data"
    assert reports["fleet@v1"]["min_samples"] == 3000
    # drift.whole_hours (the default) starts a window on its hour only when that adds at most 1/24 of it: a
    # half-hour window starts exactly (above), one of 24 h from the hour its start falls in (T0 is 800 s past one)
    day = DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=86_400 + 700)).run(T0)
    assert (day[0]["window_start"], day[0]["n_current"]) == (T0 - 86_400 - 800, (6 * 3 + 1) * 200)
    exact = DriftService(store, ReferenceLibrary(models_dir),
                         DriftSettings(window_s=86_400 + 700, whole_hours=False)).run(T0)
    assert exact[0]["window_start"] == T0 - 86_400 - 700
    assert by_scope(service(store, models_dir, test="ks").run(T0))["fleet@v1"]["test"] == "ks"


def test_reading_the_window_in_slices_changes_nothing(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest
) -> None:
    fleet(store, manifest, seed=10, rows=5, shifted=["dev-0"])
    whole = DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=WINDOW_S), read_chunk_s=WINDOW_S)
    sliced = DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=WINDOW_S), read_chunk_s=7)

    def essentials(reports: list[dict[str, Any]]) -> list[Any]:
        return [(r["scope"], r["verdict"], r["n_current"], [f["psi"] for f in r["features"]]) for r in reports]

    assert essentials(whole.run(T0)) == essentials(sliced.run(T0))
    with pytest.raises(ValueError, match="read_chunk_s"):
        DriftService(store, ReferenceLibrary(models_dir), DriftSettings(), read_chunk_s=0)


# -- what cannot be compared is skipped, never fatal ----------------------------------------------
def test_unknown_versions_mismatched_bins_and_unversioned_stats_are_skipped(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest, caplog: pytest.LogCaptureFixture
) -> None:
    fleet(store, manifest, seed=5)
    rng = np.random.default_rng(5)
    unknown = draw_stats(rng, manifest, "dev-0", T0 - 60, version="v9")
    good = draw_stats(rng, manifest, "dev-1", T0 - 60)
    short = replace(good, msg_id="short", feature_hist=good.feature_hist[:-1])
    unversioned = replace(draw_stats(rng, manifest, "dev-2", T0 - 60), model_version=None)
    ingest(store, [unknown, short, unversioned])

    svc = service(store, models_dir)
    with caplog.at_level(logging.WARNING):
        reports = svc.run(T0)
    assert [r["scope"] for r in reports] == SCOPES  # v1 unaffected; dev-1's good rows still count
    assert by_scope(reports)["device:dev-1@v1"]["n_current"] == 600
    assert svc.last_skipped == [
        Skipped(None, 1, "stats without a model version: their bins are unknown"),
        Skipped("v1", 1, "bins do not match the manifest, e.g. stats from dev-1 has 35 features, the manifest 36"),
        Skipped("v9", 1, "unknown model version 'v9': no manifest"),
    ]
    assert "unknown model version 'v9'" in caplog.text
    assert "skipped 1 stats row(s) of model version v1: bins do not match" in caplog.text


def test_each_model_version_is_compared_with_its_own_manifest(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest
) -> None:
    # v2: the same model with coarser bins for the first feature (one edge fewer), as a retrained model has.
    ref = manifest.reference
    v2_ref = Reference(
        bin_edges=[ref.bin_edges[0][1:], *ref.bin_edges[1:]],
        histograms=[[ref.histograms[0][0] + ref.histograms[0][1], *ref.histograms[0][2:]], *ref.histograms[1:]],
        score_bin_edges=ref.score_bin_edges,
        score_histogram=ref.score_histogram,
    )
    v2 = replace(manifest, version="v2", parent_version="v1", reference=v2_ref)
    (models_dir / "v2").mkdir()
    (models_dir / "v2" / MANIFEST_FILE).write_text(dump_manifest(v2).decode())

    rng = np.random.default_rng(6)
    messages: list[Any] = [status(d) for d in SITES]
    for device in SITES:
        m = v2 if device in ("dev-4", "dev-5") else manifest  # dev-4 and dev-5 were upgraded
        messages += [draw_stats(rng, m, device, T0 - 600 * (k + 1)) for k in range(3)]
    messages.append(draw_stats(rng, manifest, "dev-4", T0 - 3000))  # dev-4 before its upgrade
    ingest(store, messages)

    svc = service(store, models_dir)
    reports = by_scope(svc.run(T0))
    assert svc.last_skipped == []
    assert list(reports) == [
        "fleet@v1", "cohort:site-a/pump@v1", "cohort:site-b/fan@v1",
        *(f"device:dev-{i}@v1" for i in range(5)),
        "fleet@v2", "cohort:site-b/fan@v2", "device:dev-4@v2", "device:dev-5@v2",
    ]  # fmt: skip
    assert {r["verdict"] for r in reports.values()} == {"no_drift"}
    assert reports["fleet@v1"]["n_current"] == (4 * 3 + 1) * 200
    assert reports["fleet@v2"]["n_current"] == 2 * 3 * 200
    assert [f["name"] for f in reports["fleet@v2"]["features"]] == manifest.feature_names


def test_nothing_to_evaluate_gives_no_reports(store: SqliteHubStore, models_dir: Path) -> None:
    assert service(store, models_dir).run(T0) == []
    assert store.drift_reports() == []


def test_a_devices_rows_merge_into_the_sketch_of_their_sum(
    store: SqliteHubStore, manifest: ModelManifest
) -> None:
    fleet(store, manifest, seed=9, rows=4)
    rows = store.stats_between(0, T0)
    sketches, skipped = device_sketches(rows, manifest)
    assert skipped == [] and sorted(sketches) == sorted(SITES)
    for device, sketch in sketches.items():
        one_by_one = merge_sketches(Sketch.from_stats(r, manifest.reference)  # type: ignore[arg-type]
                                    for r in rows if r.device_id == device)
        assert np.array_equal(sketch.feature_hist, one_by_one.feature_hist)
        assert np.array_equal(sketch.score_hist, one_by_one.score_hist)
        assert (sketch.windows, sketch.anomalies) == (one_by_one.windows, one_by_one.anomalies)
        assert sketch.windows == 4 * 200


# -- cohorts, references, the table ------------------------------------------------------------------
def device(**kw: Any) -> Device:
    fields: dict[str, Any] = dict(device_id="d", online=True, last_seen=None, model_version=None,
                                  agent_version=None, site=None, asset_type=None, cohort=None)
    return Device(**{**fields, **kw})


def test_cohort_is_the_explicit_one_else_site_and_asset_type() -> None:
    assert cohort_of(device(site="a", asset_type="pump", cohort="a")) == "a/pump"  # the registry's site fallback
    assert cohort_of(device(site="a", asset_type="pump", cohort="canary")) == "canary"
    assert cohort_of(device(asset_type="pump")) == "pump"
    assert cohort_of(device()) is None


def test_explicit_cohorts_from_the_registry(store: SqliteHubStore, models_dir: Path, manifest: ModelManifest) -> None:
    fleet(store, manifest, seed=7)
    store.set_cohort("dev-0", "canary")
    store.set_cohort("dev-4", "canary")
    reports = by_scope(service(store, models_dir).run(T0))
    assert reports["cohort:canary@v1"]["n_current"] == 2 * 3 * 200
    assert reports["cohort:site-a/pump@v1"]["n_current"] == 2 * 3 * 200


def test_reference_library_reads_caches_and_refuses(
    models_dir: Path, manifest: ModelManifest, caplog: pytest.LogCaptureFixture
) -> None:
    library = ReferenceLibrary(models_dir)
    first = library.manifest("v1")
    assert first == manifest
    (models_dir / "v1" / MANIFEST_FILE).unlink()
    assert library.manifest("v1") is first  # cached

    (models_dir / "bad").mkdir()
    (models_dir / "bad" / MANIFEST_FILE).write_text('{"version": "bad"}')
    (models_dir / "v3").mkdir()
    (models_dir / "v3" / MANIFEST_FILE).write_text(dump_manifest(manifest).decode())  # says v1
    with caplog.at_level(logging.WARNING):
        assert library.manifest("v7") is None
        assert library.manifest("../v1") is None
        assert library.manifest("bad") is None
        assert library.manifest("v3") is None
    assert "unknown model version 'v7'" in caplog.text
    assert "'../v1' is not a valid version name" in caplog.text
    assert "is not a valid manifest" in caplog.text
    assert "names version 'v1', not 'v3'" in caplog.text

    (models_dir / "v7").mkdir()
    (models_dir / "v7" / MANIFEST_FILE).write_text(dump_manifest(replace(manifest, version="v7")).decode())
    assert library.manifest("v7") is not None  # published later: found, not negatively cached


def test_docstring_examples_run() -> None:
    result = doctest.testmod(drift_service)
    assert result.attempted > 0 and result.failed == 0


# -- end to end over MQTT ---------------------------------------------------------------------------
def test_stats_published_over_mqtt_are_ingested_and_drift_is_detected(
    fresh_broker: DevBroker, mqtt_clients: Clients, store: SqliteHubStore, models_dir: Path, manifest: ModelManifest
) -> None:
    """Devices publish statuses and Stats to a real mosquitto; a real IngestWorker stores them; drift runs."""
    worker = IngestWorker(host=fresh_broker.host, port=fresh_broker.port, username=HUB_USER,
                          password=fresh_broker.password(HUB_USER), prefix=fresh_broker.prefix, store=store,
                          share_group=f"g{uuid.uuid4().hex[:8]}", client_id=f"ingest-{uuid.uuid4().hex[:8]}")
    worker.start()
    try:
        assert worker.wait_ready(10)
        topics = Topics(fresh_broker.prefix)
        now = time.time()
        rng = np.random.default_rng(8)
        for dev in SITES:
            client = mqtt_clients.connect(fresh_broker, dev)
            publish(client, topics.topic(dev, Kind.STATUS), encode(status(dev, ts=now - 100)), retain=True)
            shift = {SHIFTED: 3} if dev in ("dev-0", "dev-1") else None
            for k in range(3):
                message = draw_stats(rng, manifest, dev, now - 60 * (k + 1), 250, shift=shift)
                publish(client, topics.topic(dev, Kind.STATS), encode(message))
        assert worker.wait_for(lambda s: s.stored.get("stats", 0) == 18 and s.stored.get("status", 0) == 6), \
            worker.stats()
    finally:
        worker.stop()

    reports = by_scope(service(store, models_dir).run(now))
    assert [s for s, r in reports.items() if r["verdict"] == "drift"] == [
        "cohort:site-a/pump@v1", "device:dev-0@v1", "device:dev-1@v1"
    ]
    assert reports["fleet@v1"]["n_current"] == 6 * 3 * 250
    assert all(reports[f"device:dev-{i}@v1"]["drifted_features"] == [SHIFTED] for i in (0, 1))
    assert sorted(e.payload["scope"] for e in store.events(kind=DRIFT_EVENT)) == [
        "cohort:site-a/pump@v1", "device:dev-0@v1", "device:dev-1@v1"
    ]

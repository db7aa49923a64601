"""Drift reports and events: a ``drift`` verdict is an event, written with its report."""

from __future__ import annotations

import numpy as np

from hub.app.metrics import HubMetrics
from hub.drift import Sketch, fleet_reports
from hub.store.ports import HubStore
from hub.store.rows import DRIFT_EVENT
from tests.hub.store.messages import T0, rec, stats


def test_drift_report_round_trips_and_its_verdict_is_an_event(store: HubStore) -> None:
    rng = np.random.default_rng(7)
    edges = [np.array([-1.0, 0.0, 1.0]), np.array([0.5])]
    reference = Sketch.from_values(rng.normal(size=(2000, 2)), edges)
    shifted = Sketch.from_values(rng.normal(loc=[1.0, 0.0], size=(2000, 2)), edges)
    report = fleet_reports(reference, {"dev-1": shifted}, {}, ["temp.mean", "vib.mean"])[0]
    assert report.verdict == "drift"

    report_id = store.save_drift_report(report.to_dict(), report.scope, report.verdict, T0)
    [row] = store.drift_reports()
    assert (row.id, row.scope, row.verdict, row.ts) == (report_id, "fleet", "drift", T0)
    assert row.report == report.to_dict()
    assert store.drift_reports(scope="device:dev-1") == []

    # The verdict is an event, written with the report: what the retraining trigger consumes.
    [event] = store.events(kind=DRIFT_EVENT)
    assert event.payload == {"report_id": report_id, "scope": "fleet", "reason": report.reason,
                             "drifted_features": ["temp.mean"], "reference_id": None}  # judged against the manifest
    calm = fleet_reports(reference, {"dev-1": reference}, {}, ["temp.mean", "vib.mean"])[0]
    store.save_drift_report(calm.to_dict(), calm.scope, calm.verdict, T0 + 1)
    assert len(store.events(kind=DRIFT_EVENT)) == 1 and len(store.drift_reports()) == 2

    later = store.record_event("retrain_requested", {"because": event.id})
    assert [e.kind for e in store.events()] == [DRIFT_EVENT, "retrain_requested"]
    assert [e.id for e in store.events(since_id=event.id)] == [later]

    metrics = HubMetrics()
    metrics.set_drift_report(report.to_dict())
    exposition = metrics.render()[0].decode()
    assert 'fleetloop_hub_drift_detected{scope="fleet"} 1.0' in exposition
    assert 'fleetloop_hub_drift_psi{feature="temp.mean",scope="fleet"}' in exposition


def test_stats_ends_bound_a_versions_stats(store: HubStore) -> None:
    """Where a version's stats lie: a drift reference over a window typed far too wide reads only there."""
    assert store.stats_ends("v1") is None
    store.ingest_batch([rec(stats("dev-1", T0 + 60, model_version="v1")), rec(stats("dev-2", T0 + 600,
                        model_version="v1")), rec(stats("dev-1", T0 + 9000, model_version="v2"))])
    assert store.stats_ends("v1") == (T0 + 60, T0 + 600)
    assert store.stats_ends("v2") == (T0 + 9000, T0 + 9000)
    assert store.stats_ends("v3") is None


def test_a_runs_reports_are_saved_in_one_write_with_their_ids_in_order(store: HubStore) -> None:
    reports = [({"scope": f"device:d{i}", "verdict": v, "reason": f"r{i}", "drifted_features": ["f"] if v == "drift"
                 else [], "psi": float("nan") if i == 1 else 0.5,
                 "reference": {"source": "stored", "id": 7} if i == 3 else {"source": "manifest"}}, f"device:d{i}", v)
               for i, v in enumerate(["no_drift", "drift", "insufficient_data", "drift"])]
    first = store.save_drift_report({"scope": "fleet"}, "fleet", "no_drift", T0)
    ids = store.save_drift_reports(reports, T0 + 1)
    assert len(ids) == 4 and ids == sorted(ids) and ids[0] > first
    rows = {r.id: r for r in store.drift_reports()}
    assert [(rows[i].scope, rows[i].verdict, rows[i].ts) for i in ids] == [(s, v, T0 + 1) for _, s, v in reports]
    assert rows[ids[1]].report["psi"] is None  # a non-finite float is stored as null
    assert [(e.payload["report_id"], e.payload["scope"]) for e in store.events(kind=DRIFT_EVENT)] == [
        (ids[1], "device:d1"), (ids[3], "device:d3")]
    # each event names the reference its report was judged against (None: the manifest's)
    assert [e.payload["reference_id"] for e in store.events(kind=DRIFT_EVENT)] == [None, 7]
    assert store.save_drift_reports([], T0) == []

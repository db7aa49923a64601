"""``/metrics`` (Prometheus text, refreshed from the store on scrape) and ``/health``."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.hub.api.conftest import T0, Hub, anomaly, online

EXPECTED = {
    "fleetloop_hub_ingested_messages",
    "fleetloop_hub_duplicate_messages",
    "fleetloop_hub_dead_letters",
    "fleetloop_hub_store_errors",
    "fleetloop_hub_ingest_lag_seconds",
    "fleetloop_hub_ingest_queue_depth",
    "fleetloop_hub_devices_online",
    "fleetloop_hub_devices_known",
    "fleetloop_hub_labels_pending",
    "fleetloop_hub_labels_validated",
    "fleetloop_hub_drift_psi",
    "fleetloop_hub_drift_detected",
}


def scrape(hub: Hub) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = hub.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            values.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return values


def test_metrics_expose_the_expected_names_and_mirror_the_store(hub: Hub) -> None:
    a = anomaly()
    hub.ingest(online(), online("pump-2"), a)
    tech = hub.client("technician")
    tech.post("/annotations", json={"trace_id": a.trace_id, "label": "fault", "technician_id": "t"})
    tech.post("/annotations", json={"trace_id": "later", "device_id": "pump-2", "label": "fault",
                                    "technician_id": "t"})
    hub.store.save_drift_report(
        {"scope": "fleet", "verdict": "drift", "features": [{"name": "rms", "psi": 0.4}]}, "fleet", "drift", T0
    )
    hub.client("operator").post("/labels/validate").raise_for_status()

    text = hub.client().get("/metrics").text
    for name in EXPECTED:
        assert f"# TYPE {name}" in text, name
    values = scrape(hub)
    assert values["fleetloop_hub_devices_online"][()] == 2
    assert values["fleetloop_hub_devices_known"][()] == 2
    assert values["fleetloop_hub_labels_pending"][()] == 1
    assert values["fleetloop_hub_labels_validated"][()] == 1
    assert values["fleetloop_hub_ingested_messages_total"][(("kind", "annotation"),)] == 2
    assert values["fleetloop_hub_drift_detected"][(("scope", "fleet"),)] == 1
    assert values["fleetloop_hub_drift_psi"][(("feature", "rms"), ("scope", "fleet"))] == 0.4


def test_health_reports_counts(hub: Hub) -> None:
    hub.ingest(online(), anomaly())
    body = hub.client().get("/health").json()
    assert body["status"] == "ok" and body["dev_mode"] is False
    assert body["counts"]["anomalies"] == 1 and body["counts"]["devices_online"] == 1

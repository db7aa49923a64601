"""Prometheus metrics of the hub, in a registry of their own (never the process-global default).

One `HubMetrics` per hub process, built at the entry point and passed to the ingest workers, the label
and drift jobs and the API, which serves `render()` at ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from hub.store.rows import StoreCounts

# Seconds from a device's timestamp to the hub's commit: sub-second live, minutes to days for a backlog.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, float("inf"))


class HubMetrics:
    """The hub's metrics. Ingest updates its own; others set the gauges they own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingested = Counter(
            "fleetloop_hub_ingested_messages", "Device messages stored, by kind.", ["kind"], registry=r
        )
        self.duplicates = Counter(
            "fleetloop_hub_duplicate_messages",
            "Device messages already stored (redeliveries) or statuses older than the one held, by kind.",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "fleetloop_hub_dead_letters", "Messages refused and dead-lettered, by reason.", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "fleetloop_hub_rate_limited_messages",
            "Device messages over the device's rate limit, dropped (the first of each episode dead-lettered), by "
            "device.", ["device"], registry=r,
        )
        self.store_errors = Counter(
            "fleetloop_hub_store_errors", "Batches the store failed to write (retried).", registry=r
        )
        self.ingest_lag = Histogram(
            "fleetloop_hub_ingest_lag_seconds",
            "Hub commit time minus the device message timestamp.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.ingest_queue = Gauge(
            "fleetloop_hub_ingest_queue_depth", "Messages received and not yet committed.", registry=r
        )
        self.devices_online = Gauge("fleetloop_hub_devices_online", "Devices whose presence is online.", registry=r)
        self.devices_known = Gauge("fleetloop_hub_devices_known", "Devices in the registry.", registry=r)
        self.labels_pending = Gauge(
            "fleetloop_hub_labels_pending", "Annotations waiting for validation or consensus.", registry=r
        )
        self.labels_validated = Gauge(
            "fleetloop_hub_labels_validated", "Labels validated and usable for training.", registry=r
        )
        self.drift_psi = Gauge(
            "fleetloop_hub_drift_psi", "PSI of the latest drift report, by scope and feature.", ["scope", "feature"],
            registry=r,
        )
        self.drift_detected = Gauge(
            "fleetloop_hub_drift_detected", "1 if the latest drift report of a scope says drift, else 0.", ["scope"],
            registry=r,
        )

        self.sequence_gaps = Counter(
            "fleetloop_hub_sequence_gaps", "Gaps in devices' sequence numbers that outlived the grace period "
            "(messages a device sent that the hub did not get).", registry=r,
        )
        self.sequence_missing = Counter(
            "fleetloop_hub_sequence_missing_messages", "Messages in those gaps when they were reported.", registry=r
        )
        self.sequence_filled = Counter(
            "fleetloop_hub_sequence_gaps_filled", "Reported gaps that resends filled completely.", registry=r
        )
        self.sequence_holes_open = Gauge(
            "fleetloop_hub_sequence_holes_open", "Holes in devices' sequence numbers not filled yet.", registry=r
        )
        self.resend_requests = Counter(
            "fleetloop_hub_resend_requests", "Resend commands sent to devices for missing sequence numbers.",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "fleetloop_hub_mqtt_connected", "1 while the hub's MQTT client is connected to the broker, else 0, by "
            "client (ingest: devices' messages in; commands: assignments and commands out).", ["client"], registry=r,
        )
        self.hub_acks = Counter(
            "fleetloop_hub_acks_sent", "Acknowledgement commands sent to devices after a commit.", registry=r
        )

    def watch_mqtt(self, client: str, connected: Callable[[], bool]) -> None:
        """``fleetloop_hub_mqtt_connected{client=…}`` follows `connected()` at every scrape."""
        self.mqtt_connected.labels(client=client).set_function(lambda: 1.0 if connected() else 0.0)

    def set_devices(self, known: int, online: int) -> None:
        self.devices_known.set(known)
        self.devices_online.set(online)

    def update_from_counts(self, counts: StoreCounts) -> None:
        """Refresh the gauges that mirror the store (call before rendering, e.g. in ``/metrics``)."""
        self.set_devices(counts.devices, counts.devices_online)

    def set_drift(self, scope: str, verdict: str, psi_by_feature: Mapping[str, float | None]) -> None:
        """Publish the latest report of one scope; per-feature PSI only for fleet and cohorts (cardinality)."""
        self.drift_detected.labels(scope=scope).set(1.0 if verdict == "drift" else 0.0)
        if scope.startswith("device:"):
            return
        for feature, psi in psi_by_feature.items():
            self.drift_psi.labels(scope=scope, feature=feature).set(float("nan") if psi is None else psi)

    def set_drift_report(self, report: Mapping[str, Any]) -> None:
        """`set_drift` from a ``DriftReport.to_dict()``."""
        features = report.get("features") or []
        self.set_drift(str(report["scope"]), str(report["verdict"]), {f["name"]: f.get("psi") for f in features})

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for an HTTP ``/metrics`` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

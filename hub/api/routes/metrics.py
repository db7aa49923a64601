"""``/metrics``: Prometheus exposition, refreshed from the store on every scrape (no auth, like exporters)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from hub.api.deps import LabelSettingsDep, MetricsDep, NowDep, StoreDep
from hub.app.metrics import HubMetrics
from hub.labels.service import missing_traces
from hub.store.ports import HubStore

router = APIRouter(tags=["metrics"])
log = logging.getLogger(__name__)

_DRIFT_REPORTS_SCANNED = 200


def refresh(metrics: HubMetrics, store: HubStore, pending: int) -> None:
    """Set the gauges that mirror the store: devices, labels pending and validated, latest drift per scope."""
    metrics.update_from_counts(store.counts())
    metrics.labels_pending.set(pending)
    latest = store.label_sets(limit=1)
    metrics.labels_validated.set(int(latest[0].summary.get("n_items", 0)) if latest else 0)
    seen: set[str] = set()
    for row in store.drift_reports(limit=_DRIFT_REPORTS_SCANNED):  # newest first: the first of a scope wins
        if row.scope in seen:
            continue
        seen.add(row.scope)
        features = row.report.get("features") or []
        psi = {str(f["name"]): f.get("psi") for f in features if isinstance(f, dict) and "name" in f}
        metrics.set_drift(row.scope, row.verdict, psi)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Exposition text"}},
)
def get_metrics(metrics: MetricsDep, store: StoreDep, labels: LabelSettingsDep, now: NowDep) -> Response:
    pending = sum(m.n_annotations for m in missing_traces(store, labels, now=now))
    refresh(metrics, store, pending)
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)

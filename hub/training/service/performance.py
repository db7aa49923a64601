"""Realized performance read from the store and its `performance_degraded` events (the figures and the test are
`hub.training.performance`); label-free estimates from the random samples and each version's calibration
(`hub.training.estimate`)."""

from __future__ import annotations

from collections.abc import Iterable

from hub.store.ports import HubStore
from hub.store.rows import EventRow
from hub.training.estimate import PerformanceEstimate, estimates
from hub.training.performance import (
    PERFORMANCE_EVENT,
    PerformanceSettings,
    RealizedPerformance,
    gate_time_figures,
    realized,
)
from shared.manifest import Calibration
from shared.wire import from_dict


def realized_now(store: HubStore, label_set_id: str, settings: PerformanceSettings) -> list[RealizedPerformance]:
    """Every version's realized figures on the label set's labels (reads only)."""
    items = store.label_set_items(label_set_id)
    predictions = {p.trace_id: p for p in store.predictions_by_trace([i.trace_id for i in items])}
    versions = {p.model_version for p in predictions.values()} | {i.model_version for i in items}
    expected: dict[str, tuple[float | None, float | None]] = {}
    for v in sorted(x for x in versions if x):
        row = store.model_version(v)
        if row is not None:
            expected[v] = gate_time_figures(row)
    return realized(items, predictions, expected, settings)


def monitor(store: HubStore, label_set_id: str, settings: PerformanceSettings, *, now: float,
            ) -> list[RealizedPerformance]:
    """Judge every version on the label set's labels and record a `PERFORMANCE_EVENT` for each newly degraded
    (version, scope); returns every figure."""
    figures = realized_now(store, label_set_id, settings)
    degraded = [f for f in figures if f.verdict == "degraded"]
    if degraded:
        known = {(e.payload.get("model_version"), e.payload.get("scope")) for e in _all_events(store)}
        for f in degraded:
            if (f.version, f.scope) not in known:
                store.record_event(PERFORMANCE_EVENT, {"model_version": f.version, "scope": f.scope,
                                                       "reason": f.reason, "label_set_id": label_set_id,
                                                       "figures": f.to_dict()}, ts=now)
    return figures


def _all_events(store: HubStore) -> Iterable[EventRow]:
    cursor = 0
    while True:
        page = store.events(kind=PERFORMANCE_EVENT, since_id=cursor, limit=500)
        yield from page
        if len(page) < 500:
            return
        cursor = page[-1].id


def performance_now(store: HubStore, settings: PerformanceSettings, *, now: float,
                    ) -> tuple[str | None, list[RealizedPerformance], list[PerformanceEstimate]]:
    """The latest label set's id, every version's realized figures on it, and every version's label-free estimate
    beside them: what ``GET /performance`` and the console show (reads only)."""
    label_sets = store.label_sets(limit=1)
    label_set_id = label_sets[0].id if label_sets else None
    figures = [] if label_set_id is None else realized_now(store, label_set_id, settings)
    return label_set_id, figures, estimates_now(store, label_set_id, settings, now=now, figures=figures)


def estimates_now(store: HubStore, label_set_id: str | None, settings: PerformanceSettings, *, now: float,
                  figures: list[RealizedPerformance] | None = None) -> list[PerformanceEstimate]:
    """Every version's label-free estimate over the random samples of the last `estimate_window_s` (by the devices'
    message time), beside its realized `figures` on the label set (read when not given)."""
    if figures is None:
        figures = [] if label_set_id is None else realized_now(store, label_set_id, settings)
    span = settings.estimate_window_s  # device clocks may run ahead of the hub's: as far after now as before
    # the random slice arrives as samples and, when the window alarmed, as anomalies: both kinds, or alarms go missing
    samples = [p for p in store.predictions(now - span, now + span) if p.reason == "random"]
    calibrations: dict[str, Calibration | None] = {}
    for version in sorted({p.model_version for p in samples if p.model_version}):
        row = store.model_version(version)
        raw = None if row is None else (row.manifest or {}).get("calibration")
        calibrations[version] = None if raw is None else from_dict(Calibration, raw)
    cohort_of = {d.device_id: d.cohort or d.site or "unknown" for d in store.devices()}
    return estimates(samples, cohort_of, calibrations, figures, min_samples=settings.estimate_min_samples)

"""Where the story says the drift was located: scopes judged drifted against v1's re-taken reference in at least
half of their conclusive reports after the injection; a scope's blip is listed, not located."""

from __future__ import annotations

from typing import Any

from fleetloop.story.script import StoryOutcome
from fleetloop.story.session import located
from hub.store.rows import DriftReportRow


def report(i: int, ts: float, scope: str, verdict: str, reference: int | None = 7) -> DriftReportRow:
    ref: dict[str, Any] = {"source": "manifest"} if reference is None else {"source": "device", "id": reference}
    return DriftReportRow(i, ts, scope, verdict, {"reference": ref})


def test_persistent_drift_is_located_and_a_blip_only_listed() -> None:
    outcome = StoryOutcome(reference={"id": 7}, injected_at=100.0)
    rows = [
        report(1, 50.0, "device:dev-1@v1", "drift"),  # before the injection: not counted
        report(2, 101.0, "device:dev-0@v1", "drift"), report(3, 103.0, "device:dev-0@v1", "drift"),
        report(4, 101.0, "device:dev-1@v1", "drift"), report(5, 103.0, "device:dev-1@v1", "no_drift"),
        report(6, 105.0, "device:dev-1@v1", "no_drift"),
        report(7, 101.0, "device:dev-2@v1", "drift", reference=None),  # against the shipped reference
        report(8, 103.0, "device:dev-2@v1", "insufficient_data"), report(9, 103.0, "cohort:site-a/pump@v1", "drift"),
        report(10, 103.0, "device:dev-0@v2", "drift"),  # another version
    ]
    assert located(rows, outcome) == {
        "devices": ["dev-0"], "cohorts": ["site-a/pump"],
        "flagged": {"cohort:site-a/pump": "1/1", "device:dev-0": "2/2", "device:dev-1": "1/3"}}
    assert located(rows, StoryOutcome()) == {"devices": [], "cohorts": [], "flagged": {}}

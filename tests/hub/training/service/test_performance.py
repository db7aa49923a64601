"""Realized performance on a real hub store: each version's recall, missed failures and false alarms on the labels
that came back, tested against its gate-time figures; a significant drop is a `performance_degraded` event, once,
and a retrain trigger (``performance``) when nothing of higher precedence asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.training.performance import PERFORMANCE_EVENT, PerformanceSettings, gate_time_figures
from hub.training.service.performance import monitor
from hub.training.triggers import decide
from tests.hub.training.conftest import World, build_world, training_settings


@pytest.fixture(scope="module")
def drifted_world(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[World]:
    world = build_world(tmp_path_factory.mktemp("hub"), initial_model_dir, n_machines=6, steps=1500)
    yield world
    world.store.close()


def test_a_drop_against_the_gate_time_figures_is_an_event_and_a_trigger(drifted_world: World) -> None:
    store, label_set_id = drifted_world.store, drifted_world.label_set_id
    row = store.model_version("v1")
    assert row is not None
    expected_recall, expected_far = gate_time_figures(row)
    assert expected_recall is not None and expected_far is not None
    settings = PerformanceSettings(block_s=600.0)
    figures = {f.scope: f for f in monitor(store, label_set_id, settings, now=drifted_world.clock())}
    fleet = figures["fleet"]
    items = store.label_set_items(label_set_id)
    assert fleet.version == "v1" and 0 < fleet.failures <= sum(i.label for i in items)
    assert fleet.missed == fleet.failures - fleet.recall.hits and fleet.recall.expected == expected_recall
    events = store.events(kind=PERFORMANCE_EVENT)
    assert fleet.verdict == "degraded" and [e.payload["scope"] for e in events if e.payload["scope"] == "fleet"]
    again = monitor(store, label_set_id, settings, now=drifted_world.clock())
    assert len(store.events(kind=PERFORMANCE_EVENT)) == len(events) and again  # recorded once
    service = drifted_world.service(settings=training_settings(performance=settings))
    inputs = service.inputs(drifted_world.clock(), label_set_id)
    assert inputs.performance_events == len(events) > 0
    decision = decide(training_settings().triggers, now=drifted_world.clock(), last_retrain_ts=None, new_labels=0,
                      total_labels=inputs.total_labels, drift_events=0, schedule_due=False, manual=False,
                      performance_events=inputs.performance_events)
    assert (decision.fire, decision.kind) == (True, "performance")

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


def test_the_labels_of_a_block_that_count_are_a_draw_not_the_first_ones() -> None:
    """20 healthy windows of one device in one block, the first 5 (just after a repair, spanning the failure) alarmed:
    the 5 that count are drawn by trace-id hash, not taken in time order, so the block reads 1 in 4 alarmed, not all."""
    from hub.store.rows import LabelItemRow, PredictionRow
    from hub.training.performance import realized

    def item(i: int) -> LabelItemRow:
        return LabelItemRow(trace_id=f"t{i:03d}", device_id="d1", label=0, weight=1.0, confidence=1.0,
                            n_annotations=1, cohort="site-a", model_version="v1")

    def prediction(i: int) -> PredictionRow:
        return PredictionRow(trace_id=f"t{i:03d}", msg_id=f"m{i}", kind="sample", device_id="d1", ts=1000.0 + i,
                             received_at=1000.0 + i, model_version="v1", unit=None, window_start=990.0 + i,
                             window_end=1000.0 + i, score=0.9 if i < 5 else 0.1, threshold=0.5, decision=i < 5,
                             reason="random", features=())

    items = [item(i) for i in range(20)]
    predictions = {f"t{i:03d}": prediction(i) for i in range(20)}
    fleet = next(f for f in realized(items, predictions, {"v1": (0.8, 0.02)}, PerformanceSettings(block_s=3600.0))
                 if f.scope == "fleet")
    assert fleet.healthy == 5 and fleet.false_alarms < 5
    assert realized(list(reversed(items)), predictions, {"v1": (0.8, 0.02)},
                    PerformanceSettings(block_s=3600.0))[0].false_alarms == fleet.false_alarms  # order-free

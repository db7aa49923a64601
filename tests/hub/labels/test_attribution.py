"""Device-sent annotations: one annotator per device, a lower weight, and a cap on what they contribute."""

from __future__ import annotations

from pathlib import Path

from hub.labels.service import LabelSettings, run_labels
from hub.store import IngestRecord
from hub.store.sqlite import SqliteHubStore
from shared.messages import Annotation, Sample

T0 = 1_700_000_000.0


def _sample(i: int) -> Sample:
    return Sample(device_id="dev-1", ts=T0 + i, trace_id=f"t{i:05d}", window_start=T0 + i - 10, window_end=T0 + i,
                  score=0.2, threshold=0.5, decision=False, features=[0.1], reason="random", model_version="v1")


def test_a_device_flood_cannot_become_the_label_set(tmp_path: Path) -> None:
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        store.ingest_batch([IngestRecord(_sample(i), T0 + i) for i in range(1000)])
        # The device floods (attributed to it at the MQTT edge, as hub.mqtt.decoding does); 12 technicians' votes.
        flood = [Annotation(device_id="dev-1", ts=T0 + 2000, trace_id=f"t{i:05d}", label="fault",
                            technician_id="device:dev-1") for i in range(1000)]
        techs = [Annotation(device_id="dev-1", ts=T0 + 1500, trace_id=f"t{i:05d}", label="no_fault",
                            technician_id=f"tech-{i}") for i in range(5)]
        store.ingest_batch([IngestRecord(a, T0 + 2000) for a in [*flood, *techs]])
        run = run_labels(store, LabelSettings(max_device_votes=50), now=T0 + 3000)
        items = {i.trace_id: i.label for i in run.label_set.items}
        assert all(items[f"t{i:05d}"] == 0 for i in range(5))  # a technician outweighs the device (1 vs 0.4)
        device_only = [t for t, label in items.items() if label == 1]
        assert len(device_only) <= 50  # before: 995 of 1,000 items rested on the device's word alone
        capped = [e for e in run.validation.exclusions if e.reason == "device_cap"]
        assert len(capped) == 1000 - 50
    finally:
        store.close()


def test_a_range_annotation_counts_once_against_the_cap_and_joins_on_the_machines_time(tmp_path: Path) -> None:
    """A maintenance log entry made at the machine ("failed between t1 and t2") labels every window whose last
    reading falls in the range, scored late or not, and is one of the device's `max_device_votes` annotations."""
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        late = [Sample(device_id="dev-1", ts=T0 + i + 30, trace_id=f"t{i:05d}", window_start=T0 + i - 10,
                       window_end=T0 + i, score=0.2, threshold=0.5, decision=False, features=[0.1], reason="random",
                       model_version="v1") for i in range(100)]  # a backlog: each scored 30 s after its readings
        store.ingest_batch([IngestRecord(s, s.ts) for s in late])
        ranges = [Annotation(device_id="dev-1", ts=T0 + 200, start_ts=T0 + 10, end_ts=T0 + 59, label="fault",
                             technician_id="device:dev-1"),
                  Annotation(device_id="dev-1", ts=T0 + 201, start_ts=T0 + 60, end_ts=T0 + 99, label="no_fault",
                             technician_id="device:dev-1")]
        store.ingest_batch([IngestRecord(a, T0 + 300) for a in ranges])
        run = run_labels(store, LabelSettings(max_device_votes=1), now=T0 + 400)
        items = {i.trace_id: i.label for i in run.label_set.items}
        assert items == {f"t{i:05d}": 1 for i in range(10, 60)}  # the first entry, all 50 windows; not 40-69 by ts
        capped = [e for e in run.validation.exclusions if e.reason == "device_cap"]
        assert {e.annotation_id for e in capped} == {ranges[1].annotation_id} and len(capped) == 40
    finally:
        store.close()

"""The incident pass and technicians' actions on a real SQLite store: restart-safe, guarded, labels joined."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hub.errors import IncidentInputError, IncidentNotFound, IncidentStateError
from hub.incidents.service import IncidentService
from hub.incidents.settings import IncidentSettings, SiteNotifySettings
from hub.labels.service import annotation_status, load_join
from hub.store.rows import IncidentPass, IncidentQuery, IngestRecord
from hub.store.sqlite import SqliteHubStore
from shared.topics import Topics
from tests.hub.api.conftest import T0, anomaly, online, sample

SETTINGS = IncidentSettings(gap_s=60.0, min_windows=3, quiet_s=600.0, sites={"*": SiteNotifySettings(mqtt=True)})


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


def _ingest(store: SqliteHubStore, *messages, at: float = T0 + 5) -> None:
    store.ingest_batch([IngestRecord(m, at) for m in messages])


def _service(store: SqliteHubStore, settings: IncidentSettings = SETTINGS) -> IncidentService:
    return IncidentService(store, settings, Topics())


def test_a_pass_groups_ingested_anomalies_opens_once_and_a_new_service_continues_where_the_last_stopped(store) -> None:
    _ingest(store, online("pump-1", site="plant-a"),
            *[anomaly("pump-1", ts=T0 + i, trace_id=f"t{i}") for i in range(5)], sample("pump-1", ts=T0 + 2))
    service = _service(store)
    result = service.run(T0 + 10)
    assert (result.anomalies, result.events) == (5, 1)
    [incident] = store.incidents(IncidentQuery())
    assert (incident.state, incident.windows, incident.site, incident.start_ts, incident.end_ts) == (
        "open", 5, "plant-a", T0, T0 + 4)
    assert [e.kind for e in store.incident_events(incident.id)] == ["opened"]
    assert [n.target for n in store.notifications(incident_id=incident.id)] == ["fleetloop/_hub/incidents/plant-a"]
    assert service.run(T0 + 11).anomalies == 0  # nothing new: nothing twice

    _ingest(store, anomaly("pump-1", ts=T0 + 30, trace_id="t30"), at=T0 + 31)
    restarted = _service(store)  # a hub restart: the cursor is in the store
    assert restarted.run(T0 + 40).anomalies == 1
    [incident] = store.incidents(IncidentQuery())
    assert (incident.windows, incident.end_ts) == (6, T0 + 30)
    assert [e.kind for e in store.incident_events(incident.id)] == ["opened"]  # growing is not a new event


def test_a_technicians_change_during_a_pass_makes_the_pass_write_nothing_and_the_next_one_retry(store) -> None:
    _ingest(store, online("pump-1"), *[anomaly("pump-1", ts=T0 + i) for i in range(3)])
    service = _service(store)
    service.run(T0 + 10)
    [incident] = store.incidents(IncidentQuery())
    _ingest(store, anomaly("pump-1", ts=T0 + 20, trace_id="late"))
    stale = store.active_incidents()  # what a pass read before the technician acted
    service.acknowledge(incident.id, who="alice", now=T0 + 21)
    grown = [dataclasses.replace(r, windows=4) for r in stale]
    assert not store.save_incident_pass(IncidentPass(store.incident_cursor(), store.incident_cursor() + 1,
                                                     tuple(grown)))
    assert store.incident(incident.id).state == "acknowledged"  # the technician's change stands
    assert service.run(T0 + 22).anomalies == 1  # the next pass reads the window again
    assert (store.incident(incident.id).windows, store.incident(incident.id).state) == (4, "acknowledged")


def test_a_pass_that_writes_the_incident_while_a_technician_acts_is_no_reason_to_refuse_her(store) -> None:
    """A device still alarming: the grouping pass grows the incident between the technician's read and her write.
    Her action is judged again on the incident as it is now and lands (the resolve labels the window the pass just
    added too); a state it no longer allows still refuses it, and a store that moves every time gives up."""
    _ingest(store, online("pump-1"), *[anomaly("pump-1", ts=T0 + i, trace_id=f"t{i}") for i in range(3)])
    service = _service(store)
    service.run(T0 + 10)
    [incident] = store.incidents(IncidentQuery())
    write, raced = store.write_incident, []

    def racing_write(row, **kwargs):  # the pass lands first, once per action
        if not raced or raced[-1] != row.state:
            raced.append(row.state)
            _ingest(store, anomaly("pump-1", ts=T0 + 20 + len(raced), trace_id=f"late{len(raced)}"))
            service.run(T0 + 30)
        return write(row, **kwargs)

    store.write_incident = racing_write
    acked = service.acknowledge(incident.id, who="alice", now=T0 + 40)
    assert (acked.state, acked.acknowledged_by, acked.windows) == ("acknowledged", "alice", 4)
    resolved = service.resolve(incident.id, verdict="confirmed_fault", who="alice", now=T0 + 50, fault_type="bearing")
    assert (resolved.state, resolved.windows) == ("resolved", 5)
    assert sorted(r.trace_id for r in store.annotations(device_id="pump-1")) == ["late1", "late2", "t0", "t1", "t2"]
    assert [e.kind for e in store.incident_events(incident.id)] == ["opened", "acknowledged", "resolved"]
    with pytest.raises(IncidentStateError, match="only an open incident"):
        service.acknowledge(incident.id, who="bob", now=T0 + 60)  # judged on the incident as it is

    _ingest(store, *[anomaly("pump-1", ts=T0 + 900 + i, trace_id=f"n{i}") for i in range(3)], at=T0 + 905)
    service.run(T0 + 910)
    [fresh] = store.incidents(IncidentQuery(states=("open",)))
    store.write_incident = lambda row, **kwargs: False  # a store that has always moved on
    with pytest.raises(IncidentStateError, match="kept changing meanwhile"):
        service.acknowledge(fresh.id, who="alice", now=T0 + 920)
    assert store.incident(fresh.id).state == "open"


def test_resolving_labels_every_alarm_window_joined_by_trace_id_with_the_technicians_id(store) -> None:
    _ingest(store, online("pump-1"), *[anomaly("pump-1", ts=T0 + i, trace_id=f"t{i}") for i in range(4)])
    service = _service(store)
    service.run(T0 + 10)
    [incident] = store.incidents(IncidentQuery())
    resolved = service.resolve(incident.id, verdict="confirmed_fault", who="alice", now=T0 + 100,
                               fault_type="bearing", note="outer race")
    assert (resolved.state, resolved.verdict, resolved.resolved_by) == ("resolved", "confirmed_fault", "alice")
    rows = store.annotations(device_id="pump-1")
    assert sorted(r.trace_id for r in rows) == ["t0", "t1", "t2", "t3"]
    assert {(r.label, r.fault_type, r.technician_id, r.signal) for r in rows} == {
        ("fault", "bearing", "alice", "confirmed")}
    assert set(annotation_status(store, rows).values()) == {"joined"}
    _, joined = load_join(store)
    assert sorted(j.prediction.trace_id for j in joined.joined) == ["t0", "t1", "t2", "t3"]
    with pytest.raises(IncidentStateError, match="resolved by alice"):
        service.resolve(incident.id, verdict="false_alarm", who="bob", now=T0 + 101)
    assert len(store.annotations(device_id="pump-1")) == 4


def test_a_missed_failure_is_a_fault_range_annotation_refused_where_alarms_are(store) -> None:
    _ingest(store, online("pump-1"), sample("pump-1", ts=T0 + 500, trace_id="s1"), anomaly("pump-1", ts=T0 + 50))
    service = _service(store)
    row = service.report_missed("pump-1", start_ts=T0 + 400, end_ts=T0 + 600, who="bob", now=T0 + 700,
                                fault_type="seal", note="leak found at inspection")
    assert (row.kind, row.state, row.verdict, row.fault_type) == (
        "missed_failure", "resolved", "missed_failure", "seal")
    [annotation] = store.annotations(device_id="pump-1")
    assert (annotation.start_ts, annotation.end_ts, annotation.label, annotation.technician_id) == (
        T0 + 400, T0 + 600, "fault", "bob")
    _, joined = load_join(store)
    assert [j.prediction.trace_id for j in joined.joined] == ["s1"]
    with pytest.raises(IncidentStateError, match="alarm windows of pump-1 fall in this range"):
        service.report_missed("pump-1", start_ts=T0, end_ts=T0 + 100, who="bob", now=T0 + 700, fault_type="seal")
    with pytest.raises(IncidentNotFound, match="not known"):
        service.report_missed("ghost", start_ts=T0, end_ts=T0 + 1, who="bob", now=T0, fault_type="seal")
    with pytest.raises(IncidentInputError, match="start_ts <= end_ts"):
        service.report_missed("pump-1", start_ts=T0 + 1, end_ts=T0, who="bob", now=T0, fault_type="seal")

"""Retention and presence on each store backend: pruning keeps what labels and training name, dead letters are
bounded by count and bytes, and an implausible future status does not freeze presence."""

from __future__ import annotations

from hub.store import DeadLetter, IngestRecord
from hub.store.ports import HubStore
from hub.store.retention import RetentionSettings
from shared.messages import Annotation
from tests.hub.store.messages import T0, rec, sample, stats, status

DAY = 86400.0


def test_an_implausible_future_status_does_not_freeze_presence(store: HubStore) -> None:
    # Written before ingest bounded timestamps: a status stamped a year ahead.
    store.ingest_batch([IngestRecord(status("dev-1", "online", T0 + 365 * DAY), T0)])
    store.ingest_batch([IngestRecord(status("dev-1", "offline", T0 + 10), T0 + 10)])
    device = store.device("dev-1")
    assert device is not None and device.online is False and device.status_ts == T0 + 10


def test_retention_prunes_old_rows_and_keeps_what_labels_name(store: HubStore) -> None:
    now = T0 + 400 * DAY
    old = [sample(ts=T0 + i) for i in range(5)]
    named, in_range, fresh = old[0], old[1], sample(ts=now - DAY)
    store.ingest_batch([rec(s) for s in [*old, fresh]] + [rec(stats(period_end=T0)), rec(stats(period_end=now))])
    store.ingest_batch([
        IngestRecord(Annotation(device_id="dev-1", ts=T0 + 10, trace_id=named.trace_id, label="fault",
                                technician_id="ann"), T0 + 10),
        IngestRecord(Annotation(device_id="dev-1", ts=T0 + 10, start_ts=in_range.ts, end_ts=in_range.ts,
                                label="fault", technician_id="ann"), T0 + 10),
    ])
    store.freeze_eval_slice({old[2].trace_id: True}, ts=T0)
    store.ingest_batch([], [DeadLetter("t", b"x" * 100, "bad_json", "d", ts) for ts in (T0, now, now, now)])
    for ts in (T0, T0 + 1, now):
        store.record_event("drift", {"scope": "fleet"}, ts=ts)

    pruned = RetentionSettings(dead_letters_max_rows=2).cutoffs(now)
    result = store.prune(pruned, dead_letters_max_rows=2, dead_letters_max_bytes=10_000, batch_rows=2)

    kept = {p.trace_id for p in store.predictions(0, now + 1)}
    assert kept == {named.trace_id, in_range.trace_id, old[2].trace_id, fresh.trace_id}
    assert result.samples == 2 and result.stats == 1 and result.events == 2
    assert store.counts().dead_letters == 2 and result.dead_letters == 2  # one by age, one by count
    assert store.counts().stats == 1


def test_retention_bounds_dead_letters_by_bytes(store: HubStore) -> None:
    store.ingest_batch([], [DeadLetter("t", b"x" * 1000, "bad_json", "", T0 + i) for i in range(10)])
    store.prune(RetentionSettings().cutoffs(T0), dead_letters_max_rows=100, dead_letters_max_bytes=3500)
    kept = store.dead_letters()
    assert [d.ts for d in kept] == [T0 + 9, T0 + 8, T0 + 7]  # the newest that fit in 3,500 bytes



def test_retention_prunes_ended_incidents_with_their_windows_history_and_deliveries(store: HubStore) -> None:
    from dataclasses import replace

    from hub.store.rows import IncidentEventRow, IncidentMember, IncidentPass, IncidentRow, NotificationDraft

    now = T0 + 400 * DAY
    base = IncidentRow("x", "dev-1", "site-a", "alarm", "resolved", T0, T0 + 10, 2, 0.9, "v1", T0, T0 + 20,
                       resolved_ts=T0 + 20)
    rows = {"old": base, "old-pending": base, "old-open": replace(base, state="open", resolved_ts=None),
            "recent": replace(base, resolved_ts=now - DAY, updated_ts=now - DAY),
            "old-closed": replace(base, state="closed", resolved_ts=None, closed_ts=T0 + 30)}
    incidents = tuple(replace(r, id=name) for name, r in rows.items())
    members = tuple(IncidentMember(f"{i.id}-w{n}", i.id, T0 + n, 0.9) for i in incidents for n in range(2))
    events = tuple(IncidentEventRow(f"{i.id}-e", i.id, T0 + 20, "resolved", "tech:ann") for i in incidents)
    drafts = tuple(NotificationDraft(f"{i.id}-e", i.id, "webhook", "http://x", "{}", "site-a") for i in incidents)
    assert store.save_incident_pass(IncidentPass(store.incident_cursor(), store.incident_cursor(), incidents, members,
                                                 events, drafts))
    for n in store.pending_notifications():
        if n.incident_id != "old-pending":
            store.record_delivery(n.id, ok=True, now=T0 + 21)

    result = store.prune(RetentionSettings().cutoffs(now), dead_letters_max_rows=10, dead_letters_max_bytes=10_000,
                         batch_rows=1)

    assert result.incidents == 2 and store.incident("old") is None and store.incident("old-closed") is None
    assert store.incident_windows("old") == [] and store.incident_events("old") == []
    assert store.notifications(incident_id="old") == []
    for kept in ("old-pending", "old-open", "recent"):  # still to deliver, not over, not old enough
        assert store.incident(kept) is not None and len(store.incident_windows(kept)) == 2

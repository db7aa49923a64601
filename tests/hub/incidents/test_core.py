"""The pure core of incidents: the debounce, the lifecycle, verdicts as annotations, and notification bodies."""

from __future__ import annotations

import itertools
import json

import pytest

from hub.errors import IncidentInputError, IncidentStateError
from hub.incidents import lifecycle, notify, verdicts
from hub.incidents.grouping import AlarmWindow, group_windows
from hub.incidents.settings import IncidentSettings, SiteNotifySettings, WebhookSettings
from hub.store.rows import IncidentEventRow, IncidentRow

RULES = lifecycle.Rules(gap_s=60.0, min_windows=3, quiet_s=600.0)


def _ids() -> itertools.count[int]:
    return itertools.count(1)


def _group(windows: list[AlarmWindow], active: list[IncidentRow] | None = None, gap_s: float = 60.0):
    counter = _ids()
    return group_windows(windows, active or [], gap_s=gap_s, now=10_000.0, new_id=lambda: f"i{next(counter)}",
                         sites=lambda d: f"site-of-{d}")


def w(ts: float, device: str = "d1", score: float = 0.9, trace: str | None = None) -> AlarmWindow:
    return AlarmWindow(trace or f"{device}-{ts}", device, ts, score, "v1")


def test_a_burst_of_windows_within_the_gap_is_one_incident() -> None:
    grouped = _group([w(100.0 + 0.6 * i) for i in range(94)])  # 94 alarms in a minute
    [incident] = grouped.incidents
    assert (incident.windows, incident.start_ts, incident.state, incident.site) == (94, 100.0, "pending", "site-of-d1")
    assert incident.end_ts == pytest.approx(100.0 + 0.6 * 93)
    assert {m.incident_id for m in grouped.members} == {incident.id} and len(grouped.members) == 94


def test_a_gap_longer_than_the_setting_starts_a_new_incident_and_devices_never_share_one() -> None:
    grouped = _group([w(100.0), w(160.0), w(221.0), w(100.0, device="d2")])
    spans = sorted((i.device_id, i.start_ts, i.end_ts, i.windows) for i in grouped.incidents)
    assert spans == [("d1", 100.0, 160.0, 2), ("d1", 221.0, 221.0, 1), ("d2", 100.0, 100.0, 1)]


def test_windows_arriving_out_of_order_group_by_device_time() -> None:
    grouped = _group([w(200.0), w(100.0), w(150.0)])
    [incident] = grouped.incidents
    assert (incident.start_ts, incident.end_ts, incident.windows) == (100.0, 200.0, 3)


def test_a_window_joins_an_active_incident_but_never_a_closed_or_resolved_one() -> None:
    base = IncidentRow("old", "d1", None, "alarm", "open", 100.0, 160.0, 5, 0.8, "v0", 1.0, 1.0, revision=4)
    grouped = _group([w(200.0, score=0.95)], [base])
    [extended] = grouped.incidents
    assert (extended.id, extended.end_ts, extended.windows, extended.max_score, extended.revision) == (
        "old", 200.0, 6, 0.95, 4)  # the revision it was read at: the store's guard
    for state in ("closed", "resolved", "dropped"):
        other = IncidentRow("old", "d1", None, "alarm", state, 100.0, 160.0, 5, 0.8, "v0", 1.0, 1.0)  # type: ignore[arg-type]
        assert [i.id for i in _group([w(200.0)], [other]).incidents] == ["i1"]


def test_a_pending_group_opens_at_min_windows_and_a_blip_is_dropped_after_the_gap() -> None:
    pending = IncidentRow("i", "d", None, "alarm", "pending", 100.0, 110.0, 2, 0.9, None, 110.0, 110.0)
    assert lifecycle.advance(pending, now=150.0, rules=RULES) == (pending, ())
    dropped, events = lifecycle.advance(pending, now=171.0, rules=RULES)
    assert (dropped.state, events) == ("dropped", ())
    opened, events = lifecycle.advance(IncidentRow(**{**_fields(pending), "windows": 3}), now=150.0, rules=RULES)
    assert (opened.state, opened.opened_ts, events) == ("open", 150.0, ("opened",))


def test_open_and_acknowledged_incidents_close_after_quiet_time_and_a_late_backlog_opens_and_closes() -> None:
    for state in ("open", "acknowledged"):
        row = IncidentRow("i", "d", None, "alarm", state, 100.0, 110.0, 9, 0.9, None, 110.0, 110.0)  # type: ignore[arg-type]
        assert lifecycle.advance(row, now=709.0, rules=RULES)[1] == ()
        closed, events = lifecycle.advance(row, now=710.0, rules=RULES)
        assert (closed.state, closed.closed_ts, events) == ("closed", 710.0, ("closed",))
    backlog = IncidentRow("i", "d", None, "alarm", "pending", 100.0, 110.0, 9, 0.9, None, 5000.0, 5000.0)
    assert lifecycle.advance(backlog, now=5000.0, rules=RULES)[1] == ("opened", "closed")


def _fields(row: IncidentRow) -> dict[str, object]:
    return {k: getattr(row, k) for k in row.__slots__}  # type: ignore[attr-defined]


def test_what_a_technician_may_do_depends_on_the_state() -> None:
    row = IncidentRow("i", "d", None, "alarm", "open", 100.0, 110.0, 9, 0.9, None, 110.0, 110.0)
    acked = lifecycle.acknowledge(row, who="alice", now=200.0)
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_ts) == ("acknowledged", "alice", 200.0)
    with pytest.raises(IncidentStateError, match="acknowledged by alice"):
        lifecycle.acknowledge(acked, who="bob", now=201.0)
    done = lifecycle.resolve(acked, verdict="false_alarm", who="bob", now=300.0, fault_type=None, note="fine")
    assert (done.state, done.resolved_by, done.verdict, done.note) == ("resolved", "bob", "false_alarm", "fine")
    with pytest.raises(IncidentStateError, match="resolved by bob as false_alarm"):
        lifecycle.resolve(done, verdict="false_alarm", who="bob", now=301.0, fault_type=None, note=None)
    pending = IncidentRow("p", "d", None, "alarm", "pending", 100.0, 110.0, 1, 0.9, None, 110.0, 110.0)
    with pytest.raises(IncidentStateError, match="min_windows"):
        lifecycle.resolve(pending, verdict="false_alarm", who="bob", now=301.0, fault_type=None, note=None)
    closed = IncidentRow("c", "d", None, "alarm", "closed", 100.0, 110.0, 9, 0.9, None, 110.0, 110.0)
    assert lifecycle.resolve(closed, verdict="no_fault_found", who="c", now=1.0, fault_type=None,
                             note=None).state == "resolved"


def test_verdicts_become_trace_annotations_with_stable_ids() -> None:
    fault = verdicts.trace_annotations("inc", "pump-1", ["t1", "t2"], verdict="confirmed_fault", technician_id="alice",
                                       now=50.0, fault_type="bearing", note="outer race")
    assert [(a.trace_id, a.label, a.signal, a.confidence, a.fault_type, a.technician_id) for a in fault] == [
        ("t1", "fault", "confirmed", 1.0, "bearing", "alice"), ("t2", "fault", "confirmed", 1.0, "bearing", "alice")]
    again = verdicts.trace_annotations("inc", "pump-1", ["t1"], verdict="confirmed_fault", technician_id="alice",
                                       now=99.0, fault_type="bearing")
    assert again[0].annotation_id == fault[0].annotation_id != fault[1].annotation_id
    [nff] = verdicts.trace_annotations("inc", "pump-1", ["t1"], verdict="no_fault_found", technician_id="a", now=1.0)
    assert (nff.label, nff.signal, nff.confidence) == ("no_fault", "confirmed", verdicts.NFF_CONFIDENCE)
    missed = verdicts.range_annotation("m", "pump-1", 10.0, 20.0, technician_id="a", now=30.0, fault_type="seal")
    assert (missed.trace_id, missed.start_ts, missed.end_ts, missed.label, missed.signal) == (
        None, 10.0, 20.0, "fault", "correction")


@pytest.mark.parametrize(("verdict", "fault_type", "message"), [
    ("confirmed_fault", None, "needs a fault_type"),
    ("false_alarm", "bearing", "has no fault_type"),
    ("works_now", None, "unknown verdict"),
])
def test_a_verdict_that_does_not_fit_is_refused_with_a_reason(verdict: str, fault_type: str | None,
                                                            message: str) -> None:
    with pytest.raises(IncidentInputError, match=message):
        verdicts.check(verdict, fault_type)


def test_notifications_go_to_the_site_and_to_every_site_once_each_with_a_reproducible_signed_body() -> None:
    hook = WebhookSettings(url="http://cmms.example/hook", secret="0123456789abcdef-secret")  # type: ignore[arg-type]
    sites = {"plant-a": SiteNotifySettings(webhooks=[hook], mqtt=True), "*": SiteNotifySettings(webhooks=[hook])}
    row = IncidentRow("i", "d", "plant-a", "alarm", "open", 1.0, 2.0, 3, 0.9, None, 2.0, 2.0, opened_ts=2.0)
    event = IncidentEventRow("e1", "i", 2.0, "opened", "hub", {"windows": 3})
    drafts = notify.drafts(event, row, sites, lambda s: f"fleetloop/_hub/incidents/{s}")
    assert [(d.channel, d.target, d.site_key) for d in drafts] == [
        ("webhook", "http://cmms.example/hook", "plant-a"), ("mqtt", "fleetloop/_hub/incidents/plant-a", "plant-a")]
    body = json.loads(drafts[0].body)
    assert (body["schema_version"], body["event"], body["event_id"], body["incident"]["state"]) == (
        1, "opened", "e1", "open")
    assert drafts[0].body == notify.event_body(event, row)
    other = IncidentRow("j", "d", "plant-b", "alarm", "open", 1.0, 2.0, 3, 0.9, None, 2.0, 2.0)
    assert [d.site_key for d in notify.drafts(event, other, sites, lambda s: None)] == ["*"]
    signature = notify.sign(drafts[0].body.encode(), "0123456789abcdef-secret")
    assert notify.verify(drafts[0].body.encode(), "0123456789abcdef-secret", signature)
    assert not notify.verify(drafts[0].body.encode(), "another-secret-0123456", signature)


def test_short_webhook_secrets_are_named() -> None:
    s = IncidentSettings(sites={"p": SiteNotifySettings(webhooks=[WebhookSettings(
        url="http://x.example/", secret="short")])})  # type: ignore[arg-type]
    assert s.secret_problems() == ["incidents.sites['p']: a webhook secret is shorter than 16 characters"]

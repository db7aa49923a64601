"""The incidents shell: builds incidents from ingested anomalies, carries out technicians' actions, delivers the
notifications. The only module of `hub.incidents` that touches the store, the broker or HTTP.

Why a periodic pass and not a hook in ingest: ingest stays one short transaction per batch (no reads of other
devices' incidents under the write lock), several ingest workers need no coordination, and the pass is
restart-safe by construction: it reads anomalies after a cursor kept in the store (commit order) and writes
incidents, memberships, events, notifications and the new cursor in one transaction, guarded by the cursor and
every incident's revision. A crash or a concurrent technician's change means the pass wrote nothing and the next
one starts again from the stored cursor; an anomaly joins at most one incident (its trace id is a key).
Incidents appear `incidents.interval_s` after their windows arrive, which suits people and plant systems.

Notifications are a log, not a fire-and-forget: each change's deliveries are written with the change, and the
`Notifier` job sends what is due, in order per target (a failing receiver holds back that target's later events
so they never arrive out of order), retrying with exponential backoff up to `incidents.max_attempts`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from hub.errors import IncidentInputError, IncidentNotFound, IncidentStateError
from hub.incidents import lifecycle, notify, verdicts
from hub.incidents.grouping import AlarmWindow, group_windows
from hub.incidents.settings import IncidentSettings
from hub.store.ports import HubStore
from hub.store.rows import IncidentEventRow, IncidentPass, IncidentRow, IngestRecord, NotificationRow
from shared.errors import TopicError
from shared.ids import new_id
from shared.topics import Topics

log = logging.getLogger(__name__)

HUB_ACTOR = "hub"
MAX_PASSES_PER_RUN = 20  # a backlog is worked off in batches, without holding the job for ever
# A technician's action re-reads the incident and tries again this many times when the grouping pass wrote it
# meanwhile (a device still alarming adds windows every pass): the action is judged on the incident as it is now.
ACTION_ATTEMPTS = 5


@dataclass(frozen=True)
class PassResult:
    anomalies: int = 0
    touched: int = 0
    events: int = 0
    conflicts: int = 0  # passes that found the cursor or an incident changed, and wrote nothing


@dataclass(frozen=True)
class BatchOutcome:
    """One incident of a batch resolve: the resolved row, or why not."""

    incident_id: str
    incident: IncidentRow | None = None
    error: str | None = None
    status: int = 200


class IncidentService:
    """`run(now)` every `incidents.interval_s` (a `Periodic` job); the technicians' actions for the API."""

    def __init__(self, store: HubStore, settings: IncidentSettings, topics: Topics) -> None:
        self.store = store
        self.settings = settings
        self.topics = topics
        self.rules = lifecycle.Rules(settings.gap_s, settings.min_windows, settings.quiet_s)

    # -- the grouping pass ---------------------------------------------------------------------------------------
    def run(self, now: float) -> PassResult:
        """Group what arrived since the last pass and move incidents on with time; repeat while a batch is full."""
        total = PassResult()
        for _ in range(MAX_PASSES_PER_RUN):
            result, full = self._pass(now)
            total = PassResult(total.anomalies + result.anomalies, total.touched + result.touched,
                               total.events + result.events, total.conflicts + result.conflicts)
            if not full or result.conflicts:
                break
        return total

    def _pass(self, now: float) -> tuple[PassResult, bool]:
        cursor = self.store.incident_cursor()
        anomalies, cursor_to = self.store.anomalies_after(cursor, self.settings.batch)
        active = self.store.active_incidents()
        sites: dict[str, str | None] = {}

        def site(device_id: str) -> str | None:
            if device_id not in sites:
                device = self.store.device(device_id)
                sites[device_id] = device.site if device is not None else None
            return sites[device_id]

        windows = [AlarmWindow(p.trace_id, p.device_id, p.ts, p.score, p.model_version) for p in anomalies]
        grouped = group_windows(windows, active, gap_s=self.settings.gap_s, now=now, new_id=new_id, sites=site)
        rows = {r.id: r for r in active} | {r.id: r for r in grouped.incidents}
        changed = {r.id: r for r in grouped.incidents}
        events: list[IncidentEventRow] = []
        for row in rows.values():
            new, kinds = lifecycle.advance(row, now=now, rules=self.rules)
            if new != row:
                changed[new.id] = new
            for kind in kinds:
                detail = {"windows": new.windows} if kind == "opened" else {"quiet_s": self.settings.quiet_s}
                events.append(IncidentEventRow(new_id(), new.id, now, kind, HUB_ACTOR, detail))
        if not changed and cursor_to == cursor:
            return PassResult(), False
        notes = [d for e in events for d in notify.drafts(e, changed[e.incident_id], self.settings.sites, self._topic)]
        p = IncidentPass(cursor, cursor_to, tuple(changed.values()), grouped.members, tuple(events), tuple(notes))
        if not self.store.save_incident_pass(p):
            log.info("incidents: the store changed during the pass (a technician's action?); next pass retries")
            return PassResult(conflicts=1), False
        for e in events:
            if e.kind == "opened":
                r = changed[e.incident_id]
                log.info("incident %s opened on %s: %d alarm windows from %.0f", r.id, r.device_id, r.windows,
                         r.start_ts)
        return PassResult(len(anomalies), len(changed), len(events)), len(anomalies) >= self.settings.batch

    def _topic(self, site: str | None) -> str | None:
        try:
            return self.topics.incidents(site)
        except TopicError as exc:
            log.warning("incidents: no MQTT notification for site %r: %s", site, exc)
            return None

    # -- a technician's actions ----------------------------------------------------------------------------------
    def get(self, incident_id: str) -> IncidentRow:
        row = self.store.incident(incident_id)
        if row is None:
            raise IncidentNotFound(f"no incident {incident_id}")
        return row

    def acknowledge(self, incident_id: str, *, who: str, now: float) -> IncidentRow:
        """Mark an open incident as taken by `who`; notified."""

        def attempt() -> IncidentRow | None:
            new = lifecycle.acknowledge(self.get(incident_id), who=who, now=now)
            return self._try_write(new, "acknowledged", who, now, {})

        return self._retrying(incident_id, attempt)

    def resolve(self, incident_id: str, *, verdict: str, who: str, now: float, fault_type: str | None = None,
                note: str | None = None) -> IncidentRow:
        """Record a technician's verdict: the incident is resolved and each alarm window is annotated (one
        transaction with the annotations, which join by trace id like any other); notified."""
        verdicts.check(verdict, fault_type)

        def attempt() -> IncidentRow | None:
            row = self.get(incident_id)
            new = lifecycle.resolve(row, verdict=verdict, who=who, now=now, fault_type=fault_type, note=note)
            traces = [m.trace_id for m in self.store.incident_windows(incident_id)]  # with any the pass just added
            annotations = verdicts.trace_annotations(row.id, row.device_id, traces, verdict=verdict,
                                                     technician_id=who, now=now, fault_type=fault_type, note=note,
                                                     model_version=row.model_version)
            detail = {"verdict": verdict, "fault_type": fault_type, "note": note, "annotations": len(annotations)}
            return self._try_write(new, "resolved", who, now, detail,
                                   [IngestRecord(a, received_at=now) for a in annotations])

        return self._retrying(incident_id, attempt)

    def _retrying(self, incident_id: str, attempt: Callable[[], IncidentRow | None]) -> IncidentRow:
        """`attempt` (read, judge, write) until its write lands: a grouping pass that wrote the incident in between
        (a device still alarming) is no reason to refuse a technician, whose action is judged again on the incident
        as it is now (a state it no longer allows still raises). Gives up after `ACTION_ATTEMPTS`."""
        for _ in range(ACTION_ATTEMPTS):
            done = attempt()
            if done is not None:
                return done
        raise IncidentStateError(f"incident {incident_id} kept changing meanwhile ({ACTION_ATTEMPTS} tries): look "
                                 "at it again and retry")

    def resolve_many(self, incident_ids: Sequence[str], *, verdict: str, who: str, now: float,
                     fault_type: str | None = None, note: str | None = None) -> list[BatchOutcome]:
        """`resolve` each incident; one that cannot be resolved is reported, the others still are."""
        verdicts.check(verdict, fault_type)  # a bad verdict refuses the whole batch
        out = []
        for incident_id in dict.fromkeys(incident_ids):
            try:
                row = self.resolve(incident_id, verdict=verdict, who=who, now=now, fault_type=fault_type, note=note)
                out.append(BatchOutcome(incident_id, row))
            except IncidentNotFound as exc:
                out.append(BatchOutcome(incident_id, error=str(exc), status=404))
            except IncidentStateError as exc:
                out.append(BatchOutcome(incident_id, error=str(exc), status=409))
        return out

    def report_missed(self, device_id: str, *, start_ts: float, end_ts: float, who: str, now: float,
                      fault_type: str, note: str | None = None) -> IncidentRow:
        """A failure no alarm covered: a resolved ``missed_failure`` incident and a fault annotation over the range."""
        verdicts.check(verdicts.MISSED_FAILURE, fault_type)
        if not (math.isfinite(start_ts) and math.isfinite(end_ts)) or end_ts < start_ts:
            raise IncidentInputError("a missed failure needs start_ts <= end_ts")
        device = self.store.device(device_id)
        if device is None:
            raise IncidentNotFound(f"device {device_id} is not known to the hub")
        end = math.nextafter(end_ts, math.inf)
        alarms = self.store.predictions(start_ts, end, kind="anomaly", device_ids=[device_id], limit=1)
        if alarms:
            held = self.store.active_incidents([device_id])
            hint = f" (incident {held[0].id})" if held else ""
            raise IncidentStateError(f"alarm windows of {device_id} fall in this range, e.g. trace "
                                     f"{alarms[0].trace_id}{hint}: resolve their incident as a confirmed fault")
        known = self.store.predictions(start_ts, end, device_ids=[device_id])
        version = known[-1].model_version if known else device.model_version
        row = IncidentRow(
            id=new_id(), device_id=device_id, site=device.site, kind="missed_failure", state="resolved",
            start_ts=start_ts, end_ts=end_ts, windows=0, max_score=0.0, model_version=version, created_ts=now,
            updated_ts=now, resolved_by=who, resolved_ts=now, verdict=verdicts.MISSED_FAILURE, fault_type=fault_type,
            note=note,
        )
        annotation = verdicts.range_annotation(row.id, device_id, start_ts, end_ts, technician_id=who, now=now,
                                               fault_type=fault_type, note=note, model_version=version)
        detail = {"verdict": verdicts.MISSED_FAILURE, "fault_type": fault_type, "note": note, "annotations": 1}
        return self._write(row, "missed_failure", who, now, detail, [IngestRecord(annotation, received_at=now)])

    def _write(self, row: IncidentRow, kind: str, who: str, now: float, detail: dict[str, Any],
               annotations: Sequence[IngestRecord] = ()) -> IncidentRow:
        written = self._try_write(row, kind, who, now, detail, annotations)
        if written is None:
            raise IncidentStateError(f"incident {row.id} changed meanwhile: look at it again and retry")
        return written

    def _try_write(self, row: IncidentRow, kind: str, who: str, now: float, detail: dict[str, Any],
                   annotations: Sequence[IngestRecord] = ()) -> IncidentRow | None:
        """Write `row` with its event, notifications and annotations; None (nothing written) if it moved on."""
        event = IncidentEventRow(new_id(), row.id, now, kind, who, detail)
        drafts = notify.drafts(event, row, self.settings.sites, self._topic)
        if not self.store.write_incident(row, events=[event], notifications=drafts, annotations=annotations):
            return None
        return self.get(row.id)


class Notifier:
    """Sends due deliveries of the log: webhooks over HTTP (signed), MQTT through `publish(topic, payload)`.

    `run(now)` every `incidents.notify_interval_s` (a `Periodic` job). `transport` replaces httpx's network
    (tests may pass one; the webhook tests use a real local receiver).
    """

    def __init__(self, store: HubStore, settings: IncidentSettings,
                 publish: Callable[[str, bytes], bool] | None = None, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.store = store
        self.settings = settings
        self.publish = publish
        self._http = httpx.Client(transport=transport, follow_redirects=False)
        self.delivered = 0
        self.failures = 0

    def close(self) -> None:
        self._http.close()

    def run(self, now: float) -> int:
        """One pass over the pending deliveries, oldest first; returns how many got through."""
        held: set[tuple[str, str]] = set()  # targets whose earlier event is still waiting: keep their order
        delivered = 0
        for n in self.store.pending_notifications():
            key = (n.channel, n.target)
            if key in held:
                continue
            if n.next_attempt_ts > now:
                held.add(key)
                continue
            status, error = self._send(n)
            if error is None:
                self.store.record_delivery(n.id, ok=True, now=now, status_code=status)
                delivered += 1
                continue
            held.add(key)
            self.failures += 1
            attempts = n.attempts + 1
            retry = None if attempts >= self.settings.max_attempts else now + notify.retry_delay(
                attempts, base_s=self.settings.retry_base_s, max_s=self.settings.retry_max_s)
            self.store.record_delivery(n.id, ok=False, now=now, status_code=status, error=error,
                                       next_attempt_ts=retry)
            log.warning("incident notification %d (%s %s) failed, attempt %d: %s%s", n.id, n.channel, n.target,
                        attempts, error, "" if retry is not None else "; giving up")
        self.delivered += delivered
        return delivered

    def _send(self, n: NotificationRow) -> tuple[int | None, str | None]:
        """(HTTP status, error or None)."""
        body = n.body.encode()
        if n.channel == "mqtt":
            if self.publish is None:
                return None, "this hub process has no MQTT publisher"
            return (None, None) if self.publish(n.target, body) else (None, "the MQTT publisher is not connected")
        site = self.settings.sites.get(n.site_key)
        hook = next((w for w in (site.webhooks if site else []) if str(w.url) == n.target), None)
        if hook is None:
            return None, f"webhook {n.target} is no longer configured for site {n.site_key!r}"
        headers = {"Content-Type": "application/json", notify.EVENT_HEADER: n.event_id,
                   notify.SIGNATURE_HEADER: notify.sign(body, hook.secret.get_secret_value())}
        try:
            response = self._http.post(n.target, content=body, headers=headers, timeout=hook.timeout_s)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"

"""What plant systems are told of an incident, and how: the event body, its signature, who gets it per site, and
when a failed delivery is tried again. Pure.

Every change (``opened``, ``acknowledged``, ``resolved``, ``closed``, ``missed_failure``) becomes one JSON body,
frozen in the delivery log when the change is stored (same transaction), and sent to each target once it
succeeds: webhooks get it POSTed with ``X-Fleetloop-Signature: sha256=<hex>`` (HMAC-SHA256 of the exact body
with the webhook's secret) and ``X-Fleetloop-Event`` (the event id, for receivers that must not act twice);
MQTT gets it on ``<prefix>/_hub/incidents/<site>`` (QoS 1, not retained: a plant system that was away reads the
webhook or the API, not a stale retained state).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from hub.incidents.settings import SiteNotifySettings
from hub.store.rows import IncidentEventRow, IncidentRow, NotificationDraft

SCHEMA_VERSION = 1
ALL_SITES = "*"
SIGNATURE_HEADER = "X-Fleetloop-Signature"
EVENT_HEADER = "X-Fleetloop-Event"
_PUBLIC = ("id", "device_id", "site", "kind", "state", "start_ts", "end_ts", "windows", "max_score", "model_version",
           "opened_ts", "acknowledged_by", "acknowledged_ts", "resolved_by", "resolved_ts", "verdict", "fault_type",
           "note", "closed_ts")


def incident_dict(row: IncidentRow) -> dict[str, Any]:
    """The incident as events carry it."""
    return {k: getattr(row, k) for k in _PUBLIC}


def event_body(event: IncidentEventRow, incident: IncidentRow) -> str:
    """The JSON every target of `event` receives (keys sorted, so the bytes are reproducible)."""
    return json.dumps({"schema_version": SCHEMA_VERSION, "event_id": event.id, "event": event.kind, "ts": event.ts,
                       "actor": event.actor, "incident": incident_dict(incident)}, sort_keys=True,
                      separators=(",", ":"))


def sign(body: bytes, secret: str) -> str:
    """The signature header's value.

    >>> value = sign(b'{}', "s3cret")
    >>> value.startswith("sha256="), len(value), verify(b'{}', "s3cret", value), verify(b'{ }', "s3cret", value)
    (True, 71, True, False)
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """Whether `header` is `body`'s signature under `secret` (constant time): what a receiver does."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def site_keys(site: str | None, sites: Mapping[str, SiteNotifySettings]) -> list[str]:
    """The `incidents.sites` keys that apply to a device's site: its own, and ``*``."""
    return [k for k in ([site] if site else []) + [ALL_SITES] if k in sites]


def drafts(
    event: IncidentEventRow, incident: IncidentRow, sites: Mapping[str, SiteNotifySettings],
    topic: Callable[[str | None], str | None],
) -> list[NotificationDraft]:
    """One delivery per target configured for the incident's site (each target once); `topic` gives the MQTT
    topic of a site (None: the site cannot be a topic level, no MQTT delivery).

    >>> from hub.incidents.settings import SiteNotifySettings
    >>> row = IncidentRow("i", "d", "plant-a", "alarm", "open", 1.0, 2.0, 3, 0.9, None, 2.0, 2.0)
    >>> ev = IncidentEventRow("e", "i", 2.0, "opened", "hub")
    >>> sites = {"plant-a": SiteNotifySettings(mqtt=True), "*": SiteNotifySettings(mqtt=True)}
    >>> [(d.channel, d.target) for d in drafts(ev, row, sites, lambda s: f"p/_hub/incidents/{s}")]
    [('mqtt', 'p/_hub/incidents/plant-a')]
    """
    body = event_body(event, incident)
    out: list[NotificationDraft] = []
    seen: set[tuple[str, str]] = set()
    for key in site_keys(incident.site, sites):
        s = sites[key]
        targets: list[tuple[str, str]] = [("webhook", str(w.url)) for w in s.webhooks]
        mqtt_topic = topic(incident.site) if s.mqtt else None
        if mqtt_topic is not None:
            targets.append(("mqtt", mqtt_topic))
        for channel, target in targets:
            if (channel, target) not in seen:
                seen.add((channel, target))
                out.append(NotificationDraft(event.id, incident.id, channel, target, body, key))  # type: ignore[arg-type]
    return out


def retry_delay(attempts: int, *, base_s: float, max_s: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: `base_s`, doubling, at most `max_s`.

    >>> [retry_delay(n, base_s=5.0, max_s=60.0) for n in (1, 2, 3, 4, 5)]
    [5.0, 10.0, 20.0, 40.0, 60.0]
    """
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))

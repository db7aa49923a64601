"""Incident notifications for real: a local HTTP receiver gets each event exactly once per change with a valid
HMAC signature, a failing receiver is retried with backoff (in order), and plant systems read a real mosquitto."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from hub.app.settings import HubSettings
from hub.incidents.notify import EVENT_HEADER, SIGNATURE_HEADER, verify
from hub.incidents.service import IncidentService, Notifier
from hub.incidents.settings import IncidentSettings, SiteNotifySettings, WebhookSettings
from hub.mqtt.publisher import CommandPublisher
from hub.store.rows import IncidentQuery, IngestRecord
from hub.store.sqlite import SqliteHubStore
from shared.topics import Topics
from tests.fixtures.broker import HUB_USER, Collector, subscribe
from tests.hub.api.conftest import T0, anomaly, online

SECRET = "webhook-secret-0123456789abcdef"


class Receiver:
    """A real HTTP server on a free loopback port that records every POST; answers `fail` 500s first."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[tuple[dict[str, str], bytes, int]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = 500 if owner.fail > 0 else 200
                owner.fail -= 1
                owner.calls.append((dict(self.headers), body, code))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[dict[str, object]]:
        """Bodies answered 200, after checking each one's signature."""
        out = []
        for headers, body, code in self.calls:
            assert verify(body, SECRET, headers.get(SIGNATURE_HEADER)), "a body without a valid signature"
            if code == 200:
                payload = json.loads(body)
                assert headers[EVENT_HEADER] == payload["event_id"]
                out.append(payload)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


def _settings(url: str, **kw: object) -> IncidentSettings:
    hook = WebhookSettings(url=url, secret=SecretStr(SECRET))  # type: ignore[arg-type]
    return IncidentSettings(gap_s=60.0, min_windows=2, quiet_s=600.0, retry_base_s=5.0,
                            sites={"plant-a": SiteNotifySettings(webhooks=[hook])}, **kw)  # type: ignore[arg-type]


def _open_incident(store: SqliteHubStore, service: IncidentService, device: str = "pump-1") -> str:
    store.ingest_batch([IngestRecord(m, T0) for m in (online(device, site="plant-a"), anomaly(device, ts=T0),
                                                       anomaly(device, ts=T0 + 1))])
    service.run(T0 + 10)
    return store.incidents(IncidentQuery(device_id=device))[0].id


def test_the_webhook_gets_each_change_exactly_once_signed(store: SqliteHubStore) -> None:
    receiver = Receiver()
    try:
        settings = _settings(receiver.url)
        service, notifier = IncidentService(store, settings, Topics()), Notifier(store, settings)
        incident = _open_incident(store, service)
        assert notifier.run(T0 + 10) == 1
        service.acknowledge(incident, who="alice", now=T0 + 20)
        service.resolve(incident, verdict="confirmed_fault", fault_type="bearing", who="alice", now=T0 + 30)
        assert notifier.run(T0 + 30) == 2
        for later in (T0 + 40, T0 + 4000):  # passes with nothing new send nothing again (run is synchronous)
            service.run(later)
            assert notifier.run(later) == 0
        bodies = receiver.delivered()
        assert [(b["event"], b["incident"]["state"]) for b in bodies] == [  # type: ignore[index]
            ("opened", "open"), ("acknowledged", "acknowledged"), ("resolved", "resolved")]
        assert len({b["event_id"] for b in bodies}) == 3 and len(receiver.calls) == 3
        assert {n.status for n in store.notifications(incident_id=incident)} == {"delivered"}
        notifier.close()
    finally:
        receiver.close()


def test_a_failing_receiver_is_retried_with_backoff_and_later_events_wait_their_turn(store: SqliteHubStore) -> None:
    receiver = Receiver(fail=2)
    try:
        settings = _settings(receiver.url)
        service, notifier = IncidentService(store, settings, Topics()), Notifier(store, settings)
        incident = _open_incident(store, service)
        service.acknowledge(incident, who="alice", now=T0 + 10)
        assert notifier.run(T0 + 10) == 0  # opened fails; acknowledged is held behind it
        assert [c[2] for c in receiver.calls] == [500]
        assert notifier.run(T0 + 14) == 0 and len(receiver.calls) == 1  # not due before 5 s
        assert notifier.run(T0 + 15) == 0 and [c[2] for c in receiver.calls] == [500, 500]
        assert notifier.run(T0 + 24) == 0 and len(receiver.calls) == 2  # backoff doubled: due at +25
        assert notifier.run(T0 + 25) == 2
        assert [b["event"] for b in receiver.delivered()] == ["opened", "acknowledged"]
        [first, second] = store.notifications(incident_id=incident)
        assert (first.status, first.attempts, first.last_status) == ("delivered", 3, 200)
        assert (second.status, second.attempts) == ("delivered", 1)
        notifier.close()
    finally:
        receiver.close()


def test_a_delivery_is_given_up_after_max_attempts_and_logged(store: SqliteHubStore) -> None:
    receiver = Receiver(fail=100)
    try:
        settings = _settings(receiver.url, max_attempts=2)
        service, notifier = IncidentService(store, settings, Topics()), Notifier(store, settings)
        incident = _open_incident(store, service)
        notifier.run(T0 + 10)
        notifier.run(T0 + 100)
        assert notifier.run(T0 + 10_000) == 0 and len(receiver.calls) == 2
        [n] = store.notifications(incident_id=incident)
        assert (n.status, n.attempts, n.last_status) == ("failed", 2, 500) and "HTTP 500" in (n.last_error or "")
        notifier.close()
    finally:
        receiver.close()


def test_plant_systems_get_each_event_once_on_mqtt_not_retained(store: SqliteHubStore, broker, mqtt_clients) -> None:
    settings = IncidentSettings(min_windows=2, sites={"*": SiteNotifySettings(mqtt=True)})
    topics = Topics()
    hub = HubSettings(dev_mode=True, mqtt_host=broker.host, mqtt_port=broker.port, mqtt_username=HUB_USER,
                      mqtt_password=SecretStr(broker.password(HUB_USER)))
    publisher = CommandPublisher(hub, client_id="incident-notifier-test")
    plant = Collector()
    client = mqtt_clients.connect(broker, HUB_USER, collector=plant)
    subscribe(client, f"{topics.prefix}/_hub/incidents/#")
    publisher.start()
    try:
        service, notifier = IncidentService(store, settings, topics), Notifier(store, settings, publisher.publish)
        incident = _open_incident(store, service)
        assert notifier.run(T0 + 10) == 1
        assert notifier.run(T0 + 11) == 0
        barrier = topics.incidents("barrier")  # on the notifier's own connection: MQTT keeps its order
        assert publisher.publish(barrier, b"barrier")
        messages = plant.wait_for(lambda ms: any(m.topic == barrier for m in ms))
        events = [m for m in messages if m.topic == topics.incidents("plant-a")]
        assert len(events) == 1 and not events[0].retain
        body = events[0].json()
        assert (body["event"], body["incident"]["id"], body["incident"]["site"]) == ("opened", incident, "plant-a")
    finally:
        publisher.stop()

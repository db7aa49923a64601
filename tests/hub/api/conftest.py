"""The real hub API on a real SQLite file, served by uvicorn on a free loopback port in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from hub.api import create_app
from hub.app.metrics import HubMetrics
from hub.app.settings import HubSettings, Role
from hub.app.wiring import Services, build_services
from hub.labels.service import LabelSettings
from hub.registry.signing import SigningKey
from hub.store.rows import DeviceMessage, IngestRecord
from hub.store.sqlite import SqliteHubStore
from shared.ids import new_id
from shared.messages import Anomaly, Sample, Status

T0 = 1_700_000_000.0
TOKENS: dict[str, Role] = {
    "operator-token-0123456789abcdef": "operator",
    "technician-token-0123456789abcdef": "technician",
    "viewer-token-0123456789abcdef": "viewer",
}
TOKEN: dict[str, str] = {role: token for token, role in TOKENS.items()}


class Clock:
    """The hub's clock in tests: fixed until a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", ws="none", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Hub:
    """A running hub API: its services (store, clock, metrics, registry, …), and clients per role (closed by the
    fixture)."""

    services: Services
    store: SqliteHubStore
    app: FastAPI
    clock: Clock
    metrics: HubMetrics
    url: str
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, role: str | None = None, *, token: str | None = None) -> httpx.Client:
        """A client sending the token of `role` (or `token`); neither: no Authorization header."""
        headers = {}
        if role is not None:
            token = TOKEN[role]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self._clients.append(client)
        return client

    def ingest(self, *messages: DeviceMessage, at: float | None = None) -> None:
        """Messages through the same store path as the MQTT ingest worker."""
        self.store.ingest_batch([IngestRecord(m, self.clock.now if at is None else at) for m in messages])

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextmanager
def running_hub(
    path: Path, *, tokens: dict[str, Role] | None = None, dev_mode: bool = False, **labels: Any
) -> Iterator[Hub]:
    store = SqliteHubStore(path)
    settings = HubSettings(
        dev_mode=dev_mode, tokens=TOKENS if tokens is None else tokens, mqtt_password=SecretStr("secret"),
        data_dir=path.parent, artifact_base_url="http://127.0.0.1", labels=LabelSettings(**labels),
    )
    clock = Clock(T0 + 3600)
    # The registry and rollouts are real but nothing is registered; the publisher never connects (no broker):
    # what it would send stays queued in paho. tests/hub/rollout/test_service.py covers them with a broker.
    # Training is not started: its jobs stay queued.
    services = build_services(settings, store=store, clock=clock, key=SigningKey.generate(), client_id="api-tests")
    app = create_app(services)
    try:
        with serve(app) as url:
            hub = Hub(services, store, app, clock, services.metrics, url)
            try:
                yield hub
            finally:
                hub.close()
    finally:
        store.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with running_hub(tmp_path / "hub.db") as running:
        yield running


# --- device messages ------------------------------------------------------------------------------


def anomaly(device: str = "pump-1", ts: float = T0, score: float = 0.9, trace_id: str | None = None,
            sampled: bool = False) -> Anomaly:
    return Anomaly(device_id=device, ts=ts, trace_id=trace_id or new_id(), window_start=ts - 10, window_end=ts,
                   score=score, threshold=0.5, decision=True, features=[0.5, 1.5, -2.0], model_version="v1",
                   sampled=sampled)


def sample(
    device: str = "pump-1", ts: float = T0, score: float = 0.2, reason: str = "random", trace_id: str | None = None
) -> Sample:
    return Sample(device_id=device, ts=ts, trace_id=trace_id or new_id(), window_start=ts - 10, window_end=ts,
                  score=score, threshold=0.5, decision=score >= 0.5, features=[0.1, 0.2, 0.3],
                  reason=reason, model_version="v1")  # type: ignore[arg-type]


def online(device: str = "pump-1", ts: float = T0, site: str = "site-a") -> Status:
    return Status(device_id=device, ts=ts, state="online", site=site, model_version="v1")

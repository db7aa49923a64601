"""The story's hub in this process: `HubService` (ingest, drift, triggers, training, rollouts), its HTTP API on a
loopback port in a thread, and any extra periodic job (the technicians' desk).

The hub runs the product's code unchanged; the story only passes settings (`fleetloop.story.profile`).
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from hub.app.service import HubService, Periodic
from hub.app.settings import HubSettings
from hub.store import HubStore
from shared.errors import ConfigError

__all__ = ["ApiServer", "HubRig", "bind_loopback", "new_tokens"]

log = logging.getLogger(__name__)


def bind_loopback(port: int | None, what: str = "API") -> socket.socket:
    """A TCP socket bound to 127.0.0.1:`port` (a free one for None); ConfigError in one line if it is busy."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"port {port} on 127.0.0.1 is busy ({exc.strerror or exc}): choose another {what} "
                          f"port with --api-port, or stop what is listening there") from None
    return sock


def new_tokens() -> dict[str, str]:
    """Fresh API tokens by role (the hub refuses short ones); the story's HTTP clients use them."""
    return {role: secrets.token_urlsafe(24) for role in ("operator", "technician", "viewer")}


class ApiServer:
    """uvicorn serving an ASGI app on an already bound socket, in a daemon thread; `stop` ends it."""

    def __init__(self, app: object, sock: socket.socket) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning", access_log=False)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="hub-api",
                                       daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the hub API did not start on {self.url}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.sock.close()


class HubRig:
    """`HubService` + its API + extra periodic jobs; `start()` and `stop()` (which never leaves a thread running)."""

    def __init__(self, settings: HubSettings, api_socket: socket.socket) -> None:
        self.settings = settings
        self.hub = HubService(settings)
        self.api = ApiServer(self.hub.app(), api_socket)
        self.jobs: list[Periodic] = []
        self._running: list[Periodic] = []
        self._hub_started = False

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def store(self) -> HubStore:
        return self.hub.store

    def add_job(self, name: str, interval_s: float, task: Callable[[float], object]) -> Periodic:
        """A periodic job started with the hub (or at once if it runs) and stopped before it."""
        job = Periodic(name, interval_s, task)
        self.jobs.append(job)
        if self._hub_started:
            job.start()
            self._running.append(job)
        return job

    def start(self, timeout: float = 10.0) -> None:
        self.api.start(timeout)
        self.hub.start()
        self._hub_started = True
        if not self.hub.worker.wait_ready(timeout):
            raise ConfigError(f"the hub's ingest worker did not subscribe within {timeout:.0f} s")
        for job in self.jobs:
            job.start()
            self._running.append(job)

    def stop(self) -> None:
        """Extra jobs, then the API, then the hub (its jobs, training, ingest, publisher, store)."""
        for job in self._running:
            job.stop()
        self._running.clear()
        self.api.stop()
        if self._hub_started:
            self._hub_started = False
            self.hub.stop()
        else:
            self.hub.store.close()

    @property
    def failures(self) -> int:
        """Failed runs of every periodic job (the hub's and the extra ones)."""
        return sum(job.failures for job in (*self.hub.jobs, *self.jobs))

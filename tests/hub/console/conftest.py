"""The console on the real hub app (uvicorn in a thread, a real SQLite file): a signed-in browser-like client per
role, and a hub with incidents and a rollout candidate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub.rollout.service import RolloutService
from hub.store.rows import IncidentQuery
from tests.hub.api.conftest import T0, TOKEN, Hub, anomaly, online, running_hub
from tests.hub.rollout.factories import active_and_candidate

DEVICES = {"pump-1": "plant-a", "pump-2": "plant-b", "pump-3": "plant-a"}
_HIDDEN = re.compile(r'name="(csrf|nonce)" value="([^"]+)"')


def hidden(html: str, name: str) -> str:
    """The value of a hidden form field (`csrf`, `nonce`) in a page."""
    found = [v for n, v in _HIDDEN.findall(html) if n == name]
    assert found, f"no {name} field in the page"
    return found[0]


def sign_in(hub: Hub, role: str | None, who: str = "alice") -> httpx.Client:
    """A client signed in to the console with the token of `role` (as a browser: it keeps cookies, follows no
    redirects by itself); None: a client that is not signed in."""
    client = httpx.Client(base_url=hub.url, timeout=30)
    hub._clients.append(client)
    if role is None:
        return client
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    done = client.post("/console/sign-in", data={"token": TOKEN[role], "who": who, "nonce": hidden(page.text, "nonce"),
                                                 "next": "/console/incidents"})
    assert done.status_code == 303, done.text
    return client


def csrf(client: httpx.Client, path: str = "/console/incidents") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return hidden(page.text, "csrf")


def make_incidents(hub: Hub) -> dict[str, str]:
    """One open incident per device of `DEVICES`, built by the hub's grouping pass; device → incident id."""
    for n, (device, site) in enumerate(DEVICES.items()):
        hub.ingest(online(device, site=site), *[anomaly(device, ts=T0 + 100 * n + i, score=0.6 + 0.1 * n)
                                                for i in range(3)])
    assert hub.services.incidents is not None
    hub.services.incidents.run(hub.clock.now)
    return {r.device_id: r.id for r in hub.store.incidents(IncidentQuery(states=("open",)))}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with running_hub(tmp_path / "hub.db") as running:
        yield running


@pytest.fixture
def rollouts(hub: Hub, initial_model_dir: Path, tmp_path: Path) -> RolloutService:
    """v1 active, v2 a candidate whose gate passed, five devices online."""
    service = hub.services.rollouts
    assert service is not None
    active_and_candidate(service.registry, initial_model_dir, tmp_path)
    hub.ingest(*(online(f"pump-{i}", site=DEVICES.get(f"pump-{i}", "plant-c")) for i in range(1, 6)))
    return service

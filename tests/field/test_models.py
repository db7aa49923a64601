"""Models in a production-mode fleet (issue 10 #3, #5, #6): a model that exhausts memory, replayed, expired and
unapproved assignments, and a tampered download followed by a corrected one.

The attacker here can publish on a device's assignment topic (a compromised broker or network: the test uses the
hub's broker account) and serve bytes at a url; it does not have the hub's signing key. Assignments the test
signs with the hub's key stand for ones the hub issued.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from shared.codec import encode
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE
from shared.messages import Assign
from shared.wire import replace
from tests.field.harness import FieldFleet
from tests.field.hungry import hungry_version
from tests.field.oomkiller import OomKiller
from tests.fixtures.broker import HUB_USER, Collector, Received, close_client, connect_client, publish, subscribe

pytestmark = pytest.mark.slow


# -- helpers -----------------------------------------------------------------------------------------------------
def version_copy(fleet: FieldFleet, tmp: Path, version: str) -> Path:
    """v1 as another version (same model), unsigned: what the hub registers."""
    out = tmp / version
    out.mkdir(parents=True)
    shutil.copyfile(fleet.hub_dir / "models" / "v1" / MODEL_FILE, out / MODEL_FILE)
    manifest = json.loads((fleet.hub_dir / "models" / "v1" / MANIFEST_FILE).read_text())
    manifest["version"] = version
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    return out


def register(fleet: FieldFleet, directory: Path, status: str = "candidate") -> None:
    """A candidate through ``POST /models`` (its gate skipped: no labels to judge it on), else registered from the
    hub's host (``fleetloop provision register-model``)."""
    if status != "candidate":
        fleet.register_model(directory, status)
        return
    fleet.submit_model(directory, "field test", skip_gate=True)


def assign_for(directory: Path, url: str) -> Assign:
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    sig = directory / SIGNATURE_FILE
    return Assign(ts=time.time(), version=manifest["version"], mode="active", sha256=manifest["onnx_sha256"],
                  signature=sig.read_text().strip() if sig.exists() else "", url=url)


_counter = [0]


def approve(fleet: FieldFleet, assign: Assign, device: str, *, ttl_s: float = 3600.0) -> Assign:
    """Signed for `device` with the hub's key, as the hub issues it (a counter above every earlier one)."""
    _counter[0] = max(_counter[0] + 1, int(time.time() * 1000) + 10_000)
    return fleet.key.sign_assignment(replace(assign, device_id=device, counter=_counter[0],
                                             expires=time.time() + ttl_s))


def serving(fleet: FieldFleet, device: str) -> str | None:
    with sqlite3.connect(f"file:{fleet.agent_db(device)}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM state WHERE key = 'model.active'").fetchone()
    return row[0] if row else None


def events(fleet: FieldFleet, device: str, version: str | None = None) -> list[tuple[str, str, str]]:
    store = fleet.store()
    try:
        rows = store.model_events(device_id=device)
    finally:
        store.close()
    return [(e.event, e.version, e.detail or "") for e in rows if version is None or e.version == version]


def wait_event(fleet: FieldFleet, device: str, event: str, version: str, text: str = "", after: int = 0) -> str:
    """Wait until the hub stored `event` about `version` from `device` (beyond the first `after`); its detail."""
    found: list[str] = []

    def seen() -> bool:
        proc = fleet.agents.get(device)
        assert proc is not None and proc.poll() is None, f"the agent died:\n{fleet.log_tail(device)}"
        found[:] = [d for e, v, d in events(fleet, device, version)[after:] if e == event and text in d]
        return bool(found)

    fleet.wait(seen, f"{event} {version} ({text!r}) from {device} at the hub", timeout=90)
    return found[-1]


class Attacker:
    """Publishes on devices' assignment topics and records what the hub published there."""

    def __init__(self, fleet: FieldFleet, device: str) -> None:
        self.topic = f"fleetloop/{device}/model/assign"
        self.seen = Collector()
        self.client = connect_client(fleet.broker, HUB_USER, collector=self.seen)
        subscribe(self.client, self.topic)

    def publish(self, payload: bytes | Assign) -> None:
        publish(self.client, self.topic, payload if isinstance(payload, bytes) else encode(payload), retain=True)

    def captured(self, version: str, timeout: float = 30.0) -> bytes:
        """The last assignment of `version` seen on the topic, waiting for one: a device may report serving it
        before this client's network thread has handed the message over, on a loaded machine."""

        def of_version(messages: list[Received]) -> list[bytes]:
            return [m.payload for m in messages if m.payload and m.json()["version"] == version]

        return of_version(self.seen.wait_for(lambda messages: bool(of_version(messages)), timeout))[-1]

    def close(self) -> None:
        close_client(self.client)


def online(fleet: FieldFleet, *devices: str) -> None:
    for device in devices:
        fleet.start_agent(device)
    for device in devices:
        wait_event(fleet, device, "loaded", "v1")


# -- #3: a validly signed model that exhausts memory ---------------------------------------------------------------
def test_a_model_that_exhausts_memory_is_refused_in_its_trial_and_never_tried_again(field_fleet, tmp_path):
    fleet = field_fleet
    fleet.start_hub()
    hungry = hungry_version(fleet.hub_dir / "models" / "v1", tmp_path / "v-hungry", "v-hungry", mb=1200)
    fleet.key.sign_version(hungry)  # made by the hub, valid: only its appetite is wrong
    attacker = Attacker(fleet, "dev-oom")
    settings = {"model_trial_memory_mb": 300.0}
    try:
        fleet.start_agent("dev-oom", **settings)
        wait_event(fleet, "dev-oom", "loaded", "v1")
        # the device runs in a 700 MB group (agent + children): the kernel kills the biggest process beyond that
        with OomKiller(lambda: p.pid if (p := fleet.agents.get("dev-oom")) else None, limit_mb=700) as oom:
            attacker.publish(approve(fleet, assign_for(hungry, hungry.as_uri()), "dev-oom"))
            detail = wait_event(fleet, "dev-oom", "refused", "v-hungry")
            assert "trial" in detail and "allocate" in detail
            agent_pid = fleet.agents["dev-oom"].pid
            assert all(pid != agent_pid for pid, _ in oom.kills)  # the serving process was never killed
        assert serving(fleet, "dev-oom") == "v1"
        fleet.stop_agent("dev-oom")
        seen = len(events(fleet, "dev-oom", "v-hungry"))
        fleet.start_agent("dev-oom", **settings)  # the retained assignment is still there
        detail = wait_event(fleet, "dev-oom", "refused", "v-hungry", after=seen)
        assert "refused earlier" in detail
        wait_event(fleet, "dev-oom", "loaded", "v1", after=1)
        assert [e for e, *_ in events(fleet, "dev-oom", "v-hungry")] == ["refused", "refused"]
        assert serving(fleet, "dev-oom") == "v1"
    finally:
        attacker.close()


# -- #5: a signature means made by the hub; an assignment must be approved, fresh and newer ------------------------
def test_a_replayed_old_assignment_is_refused_mid_rollout(field_fleet, tmp_path):
    fleet = field_fleet
    fleet.start_hub()
    for version in ("v2", "v3"):
        register(fleet, version_copy(fleet, tmp_path, version))
    attacker = Attacker(fleet, "dev-0")
    try:
        online(fleet, "dev-0", "dev-1")
        with fleet.api("operator") as op:
            first = op.post("/rollouts", json={"candidate": "v2", "canary": ["dev-0"], "reason": "field"})
            assert first.status_code == 201, first.text
            fleet.wait(lambda: serving(fleet, "dev-0") == "v2", "dev-0 to serve v2")
            back = op.post(f"/rollouts/{first.json()['id']}/rollback", json={"reason": "field: back to v1"})
            assert back.status_code == 200, back.text
            fleet.wait(lambda: serving(fleet, "dev-0") == "v1", "dev-0 back on v1")
            old = attacker.captured("v1")  # the hub's validly signed assignment of v1 (a signed rollback)
            second = op.post("/rollouts", json={"candidate": "v3", "canary": ["dev-0"], "reason": "field"})
            assert second.status_code == 201, second.text
            fleet.wait(lambda: serving(fleet, "dev-0") == "v3", "dev-0 to serve v3")
        seen = len(events(fleet, "dev-0", "v1"))
        attacker.publish(old)  # replayed mid-rollout
        assert "replayed" in wait_event(fleet, "dev-0", "refused", "v1", after=seen)
        assert serving(fleet, "dev-0") == "v3"
    finally:
        attacker.close()


def test_an_expired_assignment_is_refused(field_fleet, tmp_path):
    fleet = field_fleet
    fleet.start_hub()
    register(fleet, version_copy(fleet, tmp_path, "v2"))
    attacker = Attacker(fleet, "dev-0")
    try:
        online(fleet, "dev-0")
        stale = approve(fleet, assign_for(fleet.hub_dir / "models" / "v2", f"{fleet.url}/models/v2/artifact"),
                        "dev-0", ttl_s=-60)  # signed by the hub, but withheld until it expired (a freeze)
        attacker.publish(stale)
        assert "expired" in wait_event(fleet, "dev-0", "refused", "v2")
        assert serving(fleet, "dev-0") == "v1"
    finally:
        attacker.close()


def test_a_gate_rejected_version_is_neither_served_by_the_hub_nor_accepted_by_an_agent(field_fleet, tmp_path):
    fleet = field_fleet
    fleet.start_hub()
    register(fleet, version_copy(fleet, tmp_path, "v-bad"), status="rejected")
    assert httpx.get(f"{fleet.url}/models/v-bad/artifact", timeout=10).status_code in (403, 404)
    assert httpx.get(f"{fleet.url}/models/v1/artifact", timeout=10).status_code == 200
    attacker = Attacker(fleet, "dev-0")
    try:
        online(fleet, "dev-0")
        registry_copy = fleet.hub_dir / "models" / "v-bad"  # the bytes, as an attacker could have kept them
        attacker.publish(assign_for(registry_copy, registry_copy.as_uri()))  # its manifest signature is valid
        assert "approval" in wait_event(fleet, "dev-0", "refused", "v-bad")
        assert serving(fleet, "dev-0") == "v1"
    finally:
        attacker.close()


# -- #6: refusals keyed by what was downloaded; a newer assignment replaces a pending one ----------------------------
def test_a_tampered_download_does_not_poison_the_genuine_version(field_fleet, tmp_path):
    fleet = field_fleet
    fleet.start_hub()
    register(fleet, version_copy(fleet, tmp_path, "v2"))
    genuine = fleet.hub_dir / "models" / "v2"
    tampered = tmp_path / "mirror" / "v2"
    shutil.copytree(genuine, tampered)
    data = bytearray((tampered / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / MODEL_FILE).write_bytes(bytes(data))
    attacker = Attacker(fleet, "dev-0")
    try:
        online(fleet, "dev-0")
        attacker.publish(approve(fleet, assign_for(genuine, tampered.as_uri()), "dev-0"))  # a bad mirror
        assert "sha256 mismatch" in wait_event(fleet, "dev-0", "refused", "v2")
        attacker.publish(approve(fleet, assign_for(genuine, f"{fleet.url}/models/v2/artifact"), "dev-0"))
        wait_event(fleet, "dev-0", "health_ok", "v2")
        assert serving(fleet, "dev-0") == "v2"
    finally:
        attacker.close()

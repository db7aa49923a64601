"""The chaos run's bad input: malformed payloads on a device's topics with its own credentials, and assignments the
hub never issued (unsigned, another device's, a replayed old one). It also watches what the hub assigns, so the
count can tell an approved model from one that should never have served.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shared.codec import encode
from shared.manifest import MANIFEST_FILE, MODEL_FILE
from shared.messages import Assign
from tests.field.harness import FieldFleet
from tests.fixtures.broker import HUB_USER

log = logging.getLogger("bench.chaos")

APPROVED_VERSION = "v2"  # rolled out to the first device only, then rolled back
UNAPPROVED_VERSION = "v3"  # never registered nor assigned by the hub


def client(fleet: FieldFleet, username: str, on_message: Any = None, subscribe: str | None = None) -> mqtt.Client:
    """A paho MQTT 5 client that reconnects (and resubscribes) across broker restarts."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5)
    c.username_pw_set(username, fleet.broker.password(username))
    connected = threading.Event()

    def on_connect(cl: mqtt.Client, *_: Any) -> None:
        if subscribe:
            cl.subscribe(subscribe, qos=1)
        connected.set()

    c.on_connect = on_connect
    if on_message is not None:
        c.on_message = on_message
    c.connect(fleet.broker.host, fleet.broker.port, keepalive=10)
    c.loop_start()
    connected.wait(10)
    return c


def serving(db: Path) -> str | None:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            row = conn.execute("SELECT value FROM state WHERE key = 'model.active'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


class Attacks:
    """Bad input and forged assignments, and the record of what the hub approved for each device."""

    def __init__(self, fleet: FieldFleet, devices: list[str], versions_dir: Path,
                 agent_db: Callable[[str], Path]) -> None:
        self.fleet, self.devices, self.versions_dir, self.agent_db = fleet, devices, versions_dir, agent_db
        self.bad_inputs = self.bad_assignments = 0
        self._injected: set[bytes] = set()
        self._assigned: dict[str, set[str]] = {d: {"v1"} for d in devices}  # by the hub, signed for the device
        self._captured: bytes | None = None  # the hub's signed assignment of APPROVED_VERSION to devices[0]
        self._rolled_back_at: float | None = None
        self._rollout_id: str | None = None
        self._lock = threading.Lock()
        self._watch: mqtt.Client | None = None
        self._attacker: mqtt.Client | None = None

    # -- setup: two more versions, a canary rollout of one of them ------------------------------------------
    def register_versions(self) -> None:
        v1 = self.fleet.hub_dir / "models" / "v1"
        for version in (APPROVED_VERSION,):
            out = self.versions_dir / version
            out.mkdir(parents=True)
            shutil.copyfile(v1 / MODEL_FILE, out / MODEL_FILE)
            manifest = json.loads((v1 / MANIFEST_FILE).read_text())
            manifest["version"] = version
            (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
            self.fleet.submit_model(out, "chaos run: no labels to gate it on", skip_gate=True)

    def setup(self, rollout: bool = True) -> None:
        """Watch the hub's assignments, then roll APPROVED_VERSION out to the first device (a canary)."""
        self._watch = client(self.fleet, HUB_USER, self._seen, subscribe=f"{self.fleet.broker.prefix}/+/model/assign")
        self._attacker = client(self.fleet, HUB_USER)
        if not rollout:
            return
        canary = self.devices[0]
        self.fleet.wait(lambda: all(serving(self.agent_db(d)) == "v1" for d in self.devices), "agents on v1", 90)
        with self.fleet.api("operator") as op:
            r = op.post("/rollouts", json={"candidate": APPROVED_VERSION, "canary": [canary], "reason": "chaos"})
            if r.status_code != 201:
                raise RuntimeError(f"could not start the canary rollout: {r.status_code} {r.text}")
            self._rollout_id = r.json()["id"]
        self.fleet.wait(lambda: serving(self.agent_db(canary)) == APPROVED_VERSION, f"{canary} on the canary", 60)
        self.fleet.wait(lambda: self._captured is not None, "the canary's signed assignment", 30)

    def _seen(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        if not payload or payload in self._injected:
            return
        try:
            data = json.loads(payload)
        except ValueError:
            return
        device = message.topic.split("/")[-3]
        if data.get("device_id") != device or not data.get("signature"):
            return
        with self._lock:
            self._assigned.setdefault(device, set()).add(data["version"])
            if device == self.devices[0] and data["version"] == APPROVED_VERSION:
                self._captured = payload

    def rollback(self) -> None:
        """Roll the canary back to v1 (a signed rollback); from then on it must never serve the canary again."""
        if self._rollout_id is None:
            return
        canary = self.devices[0]
        with self.fleet.api("operator") as op:
            r = op.post(f"/rollouts/{self._rollout_id}/rollback", json={"reason": "chaos: back to v1"})
        if r.status_code != 200:
            log.warning("rollback refused: %s %s", r.status_code, r.text)
            return
        try:
            self.fleet.wait(lambda: serving(self.agent_db(canary)) == "v1", f"{canary} back on v1", 60)
        except AssertionError:
            log.warning("%s did not go back to v1 within 60 s", canary)
            return
        self._rolled_back_at = time.time()
        log.info("rolled back: %s serves v1 again", canary)

    # -- attacks ----------------------------------------------------------------------------------------------
    def bad_input(self, device: str) -> None:
        """Malformed messages on `device`'s own topics, sent with its own credentials (a compromised gateway)."""
        prefix = self.fleet.broker.prefix
        now = time.time()
        valid_stats = {"schema_version": 1, "device_id": device, "ts": now + 86_400}  # from the future (and short)
        payloads = [
            ("anomaly", b"\x00\xffnot json at all", False),
            ("stats", b"{", False),
            ("sample", json.dumps({"schema_version": 1, "device_id": device, "ts": now, "bogus": 1}).encode(), False),
            ("anomaly", json.dumps({"schema_version": 99, "device_id": "someone-else", "ts": now}).encode(), False),
            ("stats", json.dumps(valid_stats).encode(), False),
            ("annotation", b"[1, 2, 3]", False),
            ("anomaly", b'{"schema_version": 1}', True),  # a retained data message
            ("model/event", b"\xef\xbb\xbf" + b"x" * 50_000, False),
        ]
        c = client(self.fleet, device)
        try:
            for kind, payload, retain in payloads:
                c.publish(f"{prefix}/{device}/{kind}", payload, qos=1, retain=retain).wait_for_publish(5)
                self.bad_inputs += 1
            c.publish(f"{prefix}/{device}/anomaly", b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        except (RuntimeError, ValueError) as exc:  # the broker went down meanwhile
            log.info("bad input to %s interrupted: %s", device, exc)
        finally:
            c.disconnect()
            c.loop_stop()

    def bad_assignment(self, rng: random.Random) -> None:
        """An assignment the hub did not issue for that device: unsigned, another device's, or a replayed old one."""
        prefix = self.fleet.broker.prefix
        choices = ["unsigned"]
        if self._captured is not None and len(self.devices) > 1:
            choices.append("other_device")
        if self._captured is not None and self._rolled_back_at is not None:
            choices.append("replayed")
        kind = rng.choice(choices)
        if kind == "unsigned":
            device = rng.choice(self.devices)
            v1 = self.fleet.hub_dir / "models" / "v1"  # v1's bytes under a version the hub never registered
            manifest = json.loads((v1 / MANIFEST_FILE).read_text())
            payload = encode(Assign(ts=time.time(), version=UNAPPROVED_VERSION, mode="active",
                                    sha256=manifest["onnx_sha256"], signature="", url=v1.as_uri()))
        else:
            assert self._captured is not None
            device = rng.choice(self.devices[1:]) if kind == "other_device" else self.devices[0]
            payload = self._captured
        self._injected.add(payload)
        assert self._attacker is not None
        log.info("bad assignment (%s) to %s", kind, device)
        try:
            self._attacker.publish(f"{prefix}/{device}/model/assign", payload, qos=1).wait_for_publish(5)
            self.bad_assignments += 1
        except (RuntimeError, ValueError) as exc:
            log.info("bad assignment interrupted: %s", exc)

    # -- what the count needs -----------------------------------------------------------------------------------
    def approved(self) -> dict[str, set[str]]:
        with self._lock:
            return {d: set(v) for d, v in self._assigned.items()}

    def unapproved_after(self) -> dict[str, list[tuple[str, float]]]:
        """Versions approved once and withdrawn since: device → [(version, no longer approved after ts)]."""
        if self._rolled_back_at is None:
            return {}
        return {self.devices[0]: [(APPROVED_VERSION, self._rolled_back_at)]}

    def close(self) -> None:
        for c in (self._watch, self._attacker):
            if c is not None:
                c.disconnect()
                c.loop_stop()

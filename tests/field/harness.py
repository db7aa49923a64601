"""A production-mode fleet on loopback, as a plant runs it: the attacks and faults of tests/field run against this.

- the broker: the project's mosquitto config with per-device passwords and the ACL (`DevBroker`);
- the hub: ``fleetloop hub serve`` as its own process, **not** in dev mode: a provisioned signing key file, an MQTT
  password, API tokens for each role; v1 registered and signed through ``fleetloop provision register-model``;
  operator commands (``hub_cli``) are clients of the running hub's API, as an operator runs them;
- agents: ``fleetloop agent run`` processes, not in dev mode, each with its own broker password and the hub's
  public key pinned (``model_public_key``), so they refuse anything the hub did not sign.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetloop.devbroker import DevBroker, free_port
from fleetloop.fleet import to_toml
from hub.registry.signing import SigningKey
from hub.store.sqlite import SqliteHubStore
from tests.agent.helpers import FAST_LIVES
from tests.fixtures.broker import HUB_USER

ROLES = ("viewer", "technician", "operator")


def fleetloop(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetloop.cli", *args]


@dataclass
class FieldFleet:
    """One production-mode fleet under `root`: start the hub and agents, talk to the API, read the hub store."""

    root: Path
    broker: DevBroker
    initial_model: Path
    # None: the hub's production default (a group name derived from its MQTT password)
    share_group: str | None = field(default_factory=lambda: f"hub-{secrets.token_hex(4)}")
    tokens: dict[str, str] = field(default_factory=lambda: {role: secrets.token_urlsafe(24) for role in ROLES})
    hub_proc: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.hub_dir = self.root / "hub"
        self.key_file = self.root / "keys" / "signing.pem"
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self.key = SigningKey.create(self.key_file)  # the operator provisions it; the hub never invents one

    # --- the hub ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def hub_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
        env.update({
            "FLEETLOOP_HUB_SIGNING_KEY_FILE": str(self.key_file),
            "FLEETLOOP_HUB_MQTT_PASSWORD": self.broker.password(HUB_USER),
            "FLEETLOOP_HUB_TOKENS": json.dumps({token: role for role, token in self.tokens.items()}),
            "FLEETLOOP_HUB_INGEST_CLIENT_ID": f"{self.share_group or 'hub'}-ingest",
            "FLEETLOOP_HUB_ARTIFACT_BASE_URL": self.url,
        })
        if self.share_group is not None:
            env["FLEETLOOP_HUB_SHARE_GROUP"] = self.share_group
        env.update(extra)
        return env

    def hub_cli(self, *args: str, role: str = "operator", check: bool = True,
                **env: str) -> subprocess.CompletedProcess[str]:
        """One ``fleetloop hub …`` operator command against the running hub's API, with the token of `role`."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
        env = {**clean, "FLEETLOOP_HUB_URL": self.url, "FLEETLOOP_HUB_TOKEN": self.tokens[role], **env}
        out = subprocess.run(fleetloop("hub", *args), env=env, capture_output=True, text=True, timeout=120,
                             check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out

    def register_model(self, directory: Path, status: str = "candidate") -> None:
        """Register and sign `directory` in the hub's registry from this host (``fleetloop provision
        register-model``, what an operator does for the first model, before or beside ``hub serve``)."""
        out = subprocess.run(fleetloop("provision", "register-model", str(directory), "--status", status),
                             env=self.hub_env(FLEETLOOP_HUB_DATA_DIR=str(self.hub_dir)), capture_output=True,
                             text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise AssertionError(f"register-model {directory} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")

    def bootstrap(self) -> None:
        """Register and sign the initial model as the active version, as an operator does once."""
        initial = self.root / "initial" / self.initial_model.name  # signed in place: a copy of the shared model
        if not initial.exists():
            shutil.copytree(self.initial_model, initial)
        self.register_model(initial, status="active")

    def start_hub(self, timeout: float = 30.0, **env: str) -> None:
        if not (self.hub_dir / "hub.db").exists():
            self.bootstrap()
        log = (self.root / "hub.log").open("a")
        with log:
            self.hub_proc = subprocess.Popen(
                fleetloop("hub", "serve", "--data-dir", str(self.hub_dir), "--mqtt-host", self.broker.host,
                          "--mqtt-port", str(self.broker.port), "--port", str(self.api_port)),
                env=self.hub_env(**env), stdout=log, stderr=subprocess.STDOUT)
        self.wait(self._healthy, "the hub to answer /health", timeout)

    def _healthy(self) -> bool:
        assert self.hub_proc is not None and self.hub_proc.poll() is None, self.log_tail("hub")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop_hub(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.hub_proc is None:
            return None
        if self.hub_proc.poll() is None:
            self.hub_proc.send_signal(sig)
            try:
                self.hub_proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.hub_proc.kill()
                self.hub_proc.wait(10)
        code, self.hub_proc = self.hub_proc.returncode, None
        return code

    def api(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=30)

    def store(self) -> SqliteHubStore:
        """The hub's store, opened beside the running hub (WAL lets a reader in); close it when done."""
        return SqliteHubStore(self.hub_dir / "hub.db")

    # --- agents ----------------------------------------------------------------------------------------------

    def agent_config(self, device: str, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "device_id": device,
            "data_dir": str(self.root / "agents" / device),
            "mqtt_host": self.broker.host,
            "mqtt_port": self.broker.port,
            "initial_model": str(self.hub_dir / "models" / "v1"),
            "model_public_key": self.key.public_key_text(),
            "stats_interval_s": 1.0,
            "commit_interval_s": 0.05,
            "sample_rate": 0.05,
            "source": {"kind": "sim", "rate": 200, "seed": sum(map(ord, device)), "sim_config": FAST_LIVES},
        }
        config.update(overrides)
        return config

    def start_agent(self, device: str, **overrides: Any) -> subprocess.Popen[bytes]:
        if device not in self.broker.devices:
            self.broker.add_device(device)
        path = self.root / "agents" / f"{device}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_toml(self.agent_config(device, **overrides)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_AGENT_")}
        env["FLEETLOOP_AGENT_MQTT_PASSWORD"] = self.broker.password(device)
        log = (self.root / "agents" / f"{device}.log").open("a")
        with log:
            proc = subprocess.Popen(fleetloop("agent", "run", "--config", str(path)), env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.agents[device] = proc
        return proc

    def agent_db(self, device: str) -> Path:
        return self.root / "agents" / device / "agent.db"

    def stop_agent(self, device: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        proc = self.agents.pop(device, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    # --- waiting and logs ------------------------------------------------------------------------------------

    def log_tail(self, who: str, chars: int = 3000) -> str:
        path = self.root / "hub.log" if who == "hub" else self.root / "agents" / f"{who}.log"
        return path.read_text()[-chars:] if path.exists() else f"(no log for {who})"

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {who}\n{self.log_tail(who, 1500)}" for who in ["hub", *self.agents])
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
            time.sleep(0.2)

    def close(self) -> None:
        for device in list(self.agents):
            self.stop_agent(device)
        self.stop_hub()

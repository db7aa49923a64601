"""A production-mode fleet on one machine: the broker with the ACL, ``fleetloop hub serve`` and agent processes.

Nothing runs in dev mode, as a plant runs it:

- the broker: the project's mosquitto config with per-device passwords and the ACL (`DevBroker`);
- the hub: ``fleetloop hub serve`` as its own process with a provisioned signing key file, an MQTT password and
  API tokens for each role; the initial model registered and signed as the active version
  (``fleetloop provision register-model``);
- agents: ``fleetloop agent run`` processes, each with its own broker password and the hub's public key pinned
  (``model_public_key``), so they refuse anything the hub did not sign.

``fleetloop dev up`` (`fleetloop.devup`) runs one by hand; ``tests/field`` runs its attacks and faults against one.
Children run in process groups of their own: a terminal's Ctrl-C reaches only the caller, which stops the agents,
then the hub (`close`), so nothing is killed mid-write and no process is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetloop.devbroker import HUB_USER, DevBroker, free_port
from fleetloop.fleet.plan import to_toml
from hub.registry.signing import SigningKey
from shared.errors import TopicError
from shared.manifest import MANIFEST_FILE
from shared.topics import Topics

log = logging.getLogger(__name__)

ROLES = ("viewer", "technician", "operator")
STOP_TIMEOUT_S = 30.0


def fleetloop(*args: str) -> list[str]:
    """The ``fleetloop`` command of this interpreter."""
    return [sys.executable, "-m", "fleetloop.cli", *args]


def new_tokens() -> dict[str, str]:
    """One random API token per role (role → token)."""
    return {role: secrets.token_hex(20) for role in ROLES}  # hex: never starts with "-" on a command line


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
    """Signal `proc`, wait for it, SIGKILL it if it does not exit in time; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored signal %d for %.0f s: killing it", proc.pid, sig, timeout)
            proc.kill()
            proc.wait(10)
    return proc.returncode


@dataclass
class DevFleet:
    """One production-mode fleet under `root` over a running `broker`: start the hub and agents, reach the API.

    `initial_model` is a version directory; it is copied under `root` and registered as the active version on the
    first `start_hub`. `hub_settings` are extra ``FLEETLOOP_HUB_*`` variables; `agent_defaults` and `source` are
    the settings of every agent (a device's own overrides go to `start_agent`). The signing key under `root` is
    created once and reused, as an operator provisions it; the hub never invents one.
    """

    root: Path
    broker: DevBroker
    initial_model: Path
    tokens: dict[str, str] = field(default_factory=new_tokens)
    api_port: int = field(default_factory=free_port)
    share_group: str | None = None  # None: the hub's production default (derived from its MQTT password)
    ingest_client_id: str | None = None
    artifact_base_url: str | None = None  # None: the hub derives it from its own address
    hub_settings: dict[str, str] = field(default_factory=dict)
    agent_defaults: dict[str, Any] = field(default_factory=lambda: {
        "stats_interval_s": 1.0, "commit_interval_s": 0.05, "sample_rate": 0.05})
    source: dict[str, Any] = field(default_factory=lambda: {"kind": "sim", "rate": 200})
    hub_proc: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # device → its settings, kept for restarts

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.hub_dir = self.root / "hub"
        self.key_file = self.root / "keys" / "signing.pem"
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self.key = (SigningKey.load(self.key_file, dev_mode=False) if self.key_file.exists()
                    else SigningKey.create(self.key_file))
        manifest = json.loads((Path(self.initial_model) / MANIFEST_FILE).read_text())
        self.initial_version = str(manifest["version"])

    # --- the hub ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def hub_log(self) -> Path:
        return self.root / "hub.log"

    def hub_env(self, **extra: str) -> dict[str, str]:
        """The hub's environment: this process's, less any FLEETLOOP_HUB_*, plus the fleet's settings and secrets."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
        env.update({
            "FLEETLOOP_HUB_DATA_DIR": str(self.hub_dir),
            "FLEETLOOP_HUB_MQTT_HOST": self.broker.host,
            "FLEETLOOP_HUB_MQTT_PORT": str(self.broker.port),
            "FLEETLOOP_HUB_SIGNING_KEY_FILE": str(self.key_file),
            "FLEETLOOP_HUB_MQTT_PASSWORD": self.broker.password(HUB_USER),
            "FLEETLOOP_HUB_TOKENS": json.dumps({token: role for role, token in self.tokens.items()}),
        })
        if self.ingest_client_id is not None:
            env["FLEETLOOP_HUB_INGEST_CLIENT_ID"] = self.ingest_client_id
        if self.share_group is not None:
            env["FLEETLOOP_HUB_SHARE_GROUP"] = self.share_group
        if self.artifact_base_url is not None:
            env["FLEETLOOP_HUB_ARTIFACT_BASE_URL"] = self.artifact_base_url
        env.update(self.hub_settings)
        env.update(extra)
        return env

    def register_model(self, directory: Path, status: str = "candidate") -> None:
        """Register and sign `directory` in the hub's registry from this host (``fleetloop provision
        register-model``: what an operator does for the first model, before or beside ``hub serve``)."""
        out = subprocess.run(fleetloop("provision", "register-model", str(directory), "--status", status),
                             env=self.hub_env(), capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"registering {directory} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")

    def submit_model(self, directory: Path, reason: str, *, skip_gate: bool = False) -> dict[str, Any]:
        """Register `directory` through the running hub (``POST /models``, as an operator): gated against the active
        version, or with the gate skipped (audited with `reason`); the registered version with its gate summary."""
        with self.api("operator") as operator:
            made = operator.post("/models", json={"path": str(directory), "reason": reason, "skip_gate": skip_gate})
        if made.status_code != 201:
            raise RuntimeError(f"POST /models {directory}: {made.status_code} {made.text}")
        result: dict[str, Any] = made.json()
        return result

    def bootstrap(self) -> None:
        """Register and sign the initial model as the active version, as an operator does once (a copy: the
        registration signs the directory in place)."""
        copy = self.root / "initial" / self.initial_version
        if not copy.exists():
            shutil.copytree(self.initial_model, copy)
        self.register_model(copy, status="active")

    def start_hub(self, timeout: float = 30.0, **env: str) -> None:
        """``fleetloop hub serve`` on `api_port` (bootstrapping the registry first), until /health answers 200."""
        if not (self.hub_dir / "hub.db").exists():
            self.bootstrap()
        with self.hub_log.open("a") as out:
            self.hub_proc = subprocess.Popen(
                fleetloop("hub", "serve", "--port", str(self.api_port)), env=self.hub_env(**env),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, process_group=0)
        self.wait(self._healthy, "the hub to answer /health", timeout)

    def _healthy(self) -> bool:
        if self.hub_proc is None or self.hub_proc.poll() is not None:
            raise RuntimeError(f"the hub exited:\n{self.log_tail('hub')}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop_hub(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int | None:
        if self.hub_proc is None:
            return None
        code, self.hub_proc = stop_process(self.hub_proc, sig, timeout), None
        return code

    def api(self, role: str) -> httpx.Client:
        """An API client with `role`'s token (close it when done)."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=30)

    # --- agents ----------------------------------------------------------------------------------------------

    def agent_dir(self, device: str) -> Path:
        return self.root / "agents" / device

    def agent_db(self, device: str) -> Path:
        return self.agent_dir(device) / "agent.db"

    def agent_config(self, device: str, **overrides: Any) -> dict[str, Any]:
        """The settings file of `device`'s agent: the fleet's defaults, then `overrides` (top-level keys)."""
        config: dict[str, Any] = {
            "device_id": device,
            "data_dir": str(self.agent_dir(device)),
            "mqtt_host": self.broker.host,
            "mqtt_port": self.broker.port,
            "prefix": self.broker.prefix,
            "initial_model": str(self.hub_dir / "models" / self.initial_version),
            "model_public_key": self.key.public_key_text(),
            **self.agent_defaults,
            "source": {**self.source, "seed": sum(map(ord, device))},
        }
        config.update(overrides)
        return config

    def start_agent(self, device: str, **overrides: Any) -> subprocess.Popen[bytes]:
        """``fleetloop agent run`` for `device` (a broker user is created for it), its password in the env."""
        if device not in self.broker.devices:
            self.broker.add_device(device)
        self.overrides[device] = overrides
        path = self.root / "agents" / f"{device}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_toml(self.agent_config(device, **overrides)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_AGENT_")}
        env["FLEETLOOP_AGENT_MQTT_PASSWORD"] = self.broker.password(device)
        with (self.root / "agents" / f"{device}.log").open("a") as out:
            proc = subprocess.Popen(fleetloop("agent", "run", "--config", str(path)), env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, process_group=0)
        self.agents[device] = proc
        return proc

    def stop_agent(self, device: str, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int | None:
        proc = self.agents.pop(device, None)
        return None if proc is None else stop_process(proc, sig, timeout)

    def restart_agent(self, device: str, **changes: Any) -> subprocess.Popen[bytes]:
        """Stop `device`'s agent and start it again with its settings updated by `changes` (e.g. ``source=…``)."""
        self.stop_agent(device)
        return self.start_agent(device, **{**self.overrides.get(device, {}), **changes})

    def set_drifts(self, device: str, drifts: Sequence[Mapping[str, Any]]) -> subprocess.Popen[bytes]:
        """Restart `device`'s simulated machine with `drifts` (`sim.drift` dicts; [] clears them)."""
        current = self.agent_config(device, **self.overrides.get(device, {}))["source"]
        return self.restart_agent(device, source={**current, "drifts": [dict(d) for d in drifts]})

    # --- waiting and logs ------------------------------------------------------------------------------------

    def log_tail(self, who: str, chars: int = 3000) -> str:
        path = self.hub_log if who == "hub" else self.root / "agents" / f"{who}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no log for {who})"

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll `predicate` until it holds; AssertionError with the logs' tails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {who}\n{self.log_tail(who, 1500)}" for who in ["hub", *self.agents])
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}\n{self.diagnosis()}")
            time.sleep(0.2)

    def diagnosis(self) -> str:
        """What a timed-out wait needs besides the logs' tails: every agent's outbox (rows by topic kind, sent,
        acknowledged by the broker but not yet by the hub) and the warnings in the hub's and broker's whole logs."""
        lines = ["--- outboxes (kind: rows, sent, broker-acked awaiting the hub, attempts)"]
        topics = Topics(self.broker.prefix)
        for device in self.agents:
            try:
                with sqlite3.connect(f"file:{self.agent_db(device)}?mode=ro", uri=True, timeout=5) as conn:
                    rows = conn.execute("SELECT topic, count(*), count(seq), count(delivered), max(attempts) "
                                        "FROM outbox GROUP BY topic").fetchall()  # one device: a topic per kind
                rows = [(topics.parse(topic).kind.value, *counts) for topic, *counts in rows]
            except (sqlite3.Error, TopicError) as exc:
                rows = [(f"unreadable: {exc}", 0, 0, 0, 0)]
            lines.append(f"{device}: " + ("; ".join(f"{k}: {n}, {s}, {d}, {a}" for k, n, s, d, a in rows) or "empty"))
        for name, path in (("hub", self.hub_log), ("broker", self.broker.log_path)):
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            warned = [line for line in text if any(w in line for w in ("WARNING", "ERROR", "Warning", "Error"))]
            lines.append(f"--- {name} warnings ({len(warned)}, last 15)")
            lines.extend(warned[-15:])
        return "\n".join(lines)

    def close(self) -> None:
        """Stop every agent, then the hub (the broker belongs to the caller)."""
        for device in list(self.agents):
            self.stop_agent(device)
        self.stop_hub()

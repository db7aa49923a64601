"""The agent processes of a simulated fleet: one ``fleetloop agent run`` per device, stopped in order.

The MQTT password travels in the environment, never in argv; `Fleet.stop` sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleetloop.fleet.plan import DeviceSpec, FleetSettings, agent_config, to_toml
from shared.errors import ConfigError

log = logging.getLogger(__name__)

PASSWORD_ENV = "FLEETLOOP_AGENT_MQTT_PASSWORD"
STOP_TIMEOUT_S = 15.0  # after SIGTERM an agent flushes stats and drains its outbox for up to 5 s


class AgentProcess:
    """``python -m fleetloop.cli agent run --config <dir>/agent.toml``, logging to ``<dir>/agent.log``."""

    def __init__(self, spec: DeviceSpec, config: dict[str, Any], password: str,
                 max_duration_s: float | None) -> None:
        self.spec = spec
        self.dir = Path(config["data_dir"])
        self.config_path = self.dir / "agent.toml"
        self.log_path = self.dir / "agent.log"
        self.out_path = self.dir / "agent.out"
        self._config, self._password, self._max_duration_s = config, password, max_duration_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(self._config))
        cmd = [sys.executable, "-m", "fleetloop.cli", "agent", "run", "--config", str(self.config_path)]
        if self._max_duration_s:
            cmd += ["--duration", str(self._max_duration_s)]
        env = {**os.environ, PASSWORD_ENV: self._password}
        with self.out_path.open("wb") as out, self.log_path.open("ab") as err:  # the child keeps its copies
            # Its own process group: a terminal's Ctrl-C reaches only us, and we stop the agents in order.
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         process_group=0)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def counters(self) -> dict[str, Any] | None:
        """The counters the agent printed as its last line when it stopped, if it did."""
        lines = self.out_path.read_text(errors="replace").splitlines() if self.out_path.exists() else []
        try:
            return dict(json.loads(lines[-1])) if lines else None
        except ValueError:
            return None

    def log_tail(self, lines: int = 10) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Fleet:
    """The agent processes of a fleet. `stop()` (also on leaving a ``with`` block) never leaves one running."""

    def __init__(self, specs: Sequence[DeviceSpec], settings: FleetSettings) -> None:
        from agent.settings import AgentSettings  # validate here, not in N crashed agents

        if not (settings.model_dir / "manifest.json").is_file():
            raise ConfigError(f"{settings.model_dir} is not a model version directory (no manifest.json)")
        self.specs = list(specs)
        self.agents: dict[str, AgentProcess] = {}
        for spec in self.specs:
            password = settings.passwords.get(spec.device_id)
            if password is None:
                raise ConfigError(f"no broker password for {spec.device_id}: create the device user first")
            config = agent_config(spec, settings)
            try:
                AgentSettings.load(None, **config, mqtt_password=password)
            except ConfigError as exc:
                raise ConfigError(f"{spec.device_id}: {exc}") from None
            self.agents[spec.device_id] = AgentProcess(spec, config, password, settings.max_duration_s)

    def start(self) -> None:
        for agent in self.agents.values():
            agent.start()
            log.debug("started %s (pid %s, %s)", agent.spec.device_id, agent.pid, agent.spec.cohort)

    def running(self) -> list[str]:
        return [d for d, a in self.agents.items() if a.proc is not None and a.poll() is None]

    def exit_codes(self) -> dict[str, int | None]:
        return {d: a.poll() for d, a in self.agents.items()}

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every agent, wait up to `timeout` s in all, SIGKILL the stragglers (at once on Ctrl-C)."""
        live = [a for a in self.agents.values() if a.proc is not None and a.poll() is None]
        for agent in live:
            assert agent.proc is not None
            agent.proc.terminate()
        deadline = time.monotonic() + timeout
        try:
            for agent in live:
                assert agent.proc is not None
                try:
                    agent.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s ignored SIGTERM for %.0f s: killing it", agent.spec.device_id, timeout)
                    agent.proc.kill()
                    agent.proc.wait()
        except KeyboardInterrupt:
            log.warning("interrupted again: killing the agents")
            for agent in live:
                assert agent.proc is not None
                if agent.proc.poll() is None:
                    agent.proc.kill()
                agent.proc.wait()
            raise

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

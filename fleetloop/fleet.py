"""A fleet of simulated agents, one process each, watched from the hub's side of the broker.

`plan_fleet` deals devices ``dev-0…`` into the simulator's cohorts with seeds of their own; `Fleet` runs one
``fleetloop agent run`` process per device (the MQTT password travels in the environment, never in argv)
and stops them with SIGTERM, then SIGKILL; `FleetMonitor` subscribes as ``hub`` to every device → hub topic
and tallies presence, predictions/s, anomalies and samples. `fleetloop sim fleet` and `fleetloop demo`
are thin CLIs around `supervise`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from pydantic import ValidationError

from infra.mqtt import build_client, close_client
from shared.codec import decode_topic
from shared.errors import ConfigError, DecodeError
from shared.messages import Anomaly, ModelEvent, Sample, Stats, Status
from shared.topics import DEFAULT_PREFIX, Kind, Topics
from sim.dataset import default_fleet
from sim.drift import Drift
from sim.machine import MachineConfig
from sim.technicians import SimDevice

log = logging.getLogger(__name__)

PASSWORD_ENV = "FLEETLOOP_AGENT_MQTT_PASSWORD"
STOP_TIMEOUT_S = 15.0  # after SIGTERM an agent flushes stats and drains its outbox for up to 5 s
WATCHED = (Kind.STATUS, Kind.ANOMALY, Kind.SAMPLE, Kind.STATS, Kind.MODEL_EVENT)
DriftPlan = Callable[["DeviceSpec"], Sequence[Drift]]


# --- planning -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated device: its id, simulator seed, machine (cohort) and drifts to inject."""

    device_id: str
    seed: int
    machine: MachineConfig
    drifts: tuple[Drift, ...] = ()

    @property
    def cohort(self) -> str:
        return self.machine.cohort

    def sim_device(self, *, start_ts: float, rate: float) -> SimDevice:
        """This device as its agent's simulated source runs it (clock origin and pace): its ground truth."""
        return SimDevice(self.device_id, self.seed, self.machine, self.drifts, start_ts, rate)


def plan_fleet(n: int, seed: int, *, cohorts: Sequence[MachineConfig] | None = None,
               machine_overrides: Mapping[str, Any] | None = None, drift: DriftPlan | None = None) -> list[DeviceSpec]:
    """Devices ``dev-0`` … ``dev-{n-1}`` dealt into `cohorts` (default `default_fleet()`) in turn.

    Each device gets its own seed derived from `seed`; `machine_overrides` replace machine fields in every
    cohort (e.g. shorter lives); `drift` is the hook for drift injection: it returns the drifts of a device.
    """
    if n < 1:
        raise ConfigError("a fleet needs at least one device")
    configs = tuple(cohorts) if cohorts is not None else default_fleet()
    if not configs:
        raise ConfigError("a fleet needs at least one cohort")
    if machine_overrides:
        try:
            configs = tuple(MachineConfig(**{**c.model_dump(), **machine_overrides}) for c in configs)
        except ValidationError as exc:
            raise ConfigError(f"invalid machine settings: {exc.errors(include_url=False)[0]['msg']}") from None
    seeds = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    specs = [DeviceSpec(f"dev-{i}", int(seeds[i]), configs[i % len(configs)]) for i in range(n)]
    if drift is not None:
        specs = [DeviceSpec(s.device_id, s.seed, s.machine, tuple(drift(s))) for s in specs]
    return specs


@dataclass(frozen=True)
class FleetSettings:
    """Where the agents connect, what they serve and how fast their simulated machines produce readings."""

    host: str
    port: int
    passwords: Mapping[str, str]  # device id -> MQTT password
    model_dir: Path
    data_dir: Path
    prefix: str = DEFAULT_PREFIX
    rate: float = 10.0  # readings per second per device
    stats_interval_s: float = 5.0
    max_duration_s: float | None = None  # each agent's own --duration: a safety net if this process dies
    model_public_key: str | None = None  # the hub's signing key the agents pin (file path or base64 text)
    agent_overrides: Mapping[str, Any] = field(default_factory=dict)  # any other AgentSettings fields
    start_ts: float | None = None  # the sources' clock origin (reading t is stamped start_ts + t / rate); None: now


def agent_config(spec: DeviceSpec, settings: FleetSettings) -> dict[str, Any]:
    """The agent settings file of one device (everything but the password)."""
    source: dict[str, Any] = {"kind": "sim", "rate": settings.rate, "seed": spec.seed,
                              "sim_config": spec.machine.model_dump(mode="json")}
    if spec.drifts:
        source["drifts"] = [d.model_dump(mode="json") for d in spec.drifts]
    if settings.start_ts is not None:
        source["start_ts"] = settings.start_ts
    return {
        "device_id": spec.device_id, "data_dir": str((settings.data_dir / spec.device_id).resolve()),
        "prefix": settings.prefix, "site": spec.machine.site, "asset_type": spec.machine.asset_type,
        "mqtt_host": settings.host, "mqtt_port": settings.port, "initial_model": str(settings.model_dir.resolve()),
        "stats_interval_s": settings.stats_interval_s,
        **({"model_public_key": settings.model_public_key} if settings.model_public_key else {}),
        **settings.agent_overrides, "source": source,
    }


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for a settings dict: scalars first, then one table per top-level mapping (nested ones inline)."""

    def key(k: str) -> str:
        return k if _BARE_KEY.match(k) else json.dumps(k)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str | Path):
            return json.dumps(str(v))  # JSON string escapes are valid TOML basic-string escapes
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    lines = [f"{key(k)} = {value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for name, table in data.items():
        if isinstance(table, Mapping):
            lines += ["", f"[{key(name)}]", *(f"{key(k)} = {value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


# --- processes ----------------------------------------------------------------------------------------------


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


# --- monitoring ---------------------------------------------------------------------------------------------


@dataclass
class DeviceTally:
    """What the hub side has seen of one device."""

    device_id: str
    online: bool = False
    ever_online: bool = False  # said online during this run (a retained status from before does not count)
    site: str | None = None
    asset_type: str | None = None
    model_version: str | None = None
    windows: int = 0  # from stats reports
    anomalies: int = 0  # anomaly messages, duplicates (QoS 1 redeliveries) dropped
    samples: int = 0
    stats_reports: int = 0
    model_events: list[str] = field(default_factory=list)
    rate: float = 0.0  # predictions/s in the last stats period
    rate_until: float = 0.0  # the rate is stale after this time


@dataclass(frozen=True)
class FleetSnapshot:
    at: float
    devices: tuple[DeviceTally, ...]
    rejected: int  # messages that failed to decode

    @property
    def online(self) -> int:
        return sum(d.online for d in self.devices)

    @property
    def ever_online(self) -> int:
        return sum(d.ever_online for d in self.devices)

    @property
    def predictions_per_s(self) -> float:
        return sum(d.rate for d in self.devices if d.online and d.rate_until >= self.at)

    def total(self, name: str) -> int:
        return sum(int(getattr(d, name)) for d in self.devices)

    def progress_line(self, elapsed_s: float) -> str:
        versions = sorted({d.model_version for d in self.devices if d.model_version})
        return (f"t+{elapsed_s:4.0f}s  online {self.online}/{len(self.devices)}  "
                f"predictions/s {self.predictions_per_s:6.1f}  windows {self.total('windows')}  "
                f"anomalies {self.total('anomalies')}  samples {self.total('samples')}  "
                f"model {','.join(versions) or '-'}")


class FleetMonitor:
    """A hub-side observer (plain, not shared, subscriptions) tallying what every device publishes."""

    def __init__(self, host: str, port: int, password: str, devices: Sequence[str], *,
                 prefix: str = DEFAULT_PREFIX, username: str = "hub") -> None:
        self.topics = Topics(prefix)
        self.host, self.port = host, port
        self.started_at = time.time()
        self._tallies = {d: DeviceTally(d) for d in devices}
        self._seen: deque[str] = deque(maxlen=100_000)
        self._seen_set: set[str] = set()
        self._rejected = 0
        self._lock = threading.Lock()
        self._answered = threading.Event()  # CONNACK received, accepted or not
        self._reason: Any = None
        self._subscribed = threading.Event()
        client = build_client(f"fleetloop-monitor-{uuid.uuid4().hex[:8]}", username=username, password=password)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        self.client = client

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; ConfigError if the broker cannot be reached or refuses the login."""
        self.started_at = time.time()
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise ConfigError(f"cannot reach the broker at {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.client.loop_start()
        answered = self._answered.wait(timeout)
        if not answered or self._reason.is_failure or not self._subscribed.wait(timeout):
            self.stop()
            refused = answered and self._reason.is_failure
            why = f"refused: {self._reason}" if refused else f"no answer in {timeout:.0f} s"
            raise ConfigError(f"the broker at {self.host}:{self.port} did not let the monitor in ({why})")

    def stop(self) -> None:
        close_client(self.client)

    def snapshot(self, now: float | None = None) -> FleetSnapshot:
        with self._lock:
            devices = tuple(DeviceTally(**{**vars(t), "model_events": list(t.model_events)})
                            for t in self._tallies.values())
            return FleetSnapshot(time.time() if now is None else now, devices, self._rejected)

    def wait_offline(self, timeout: float) -> bool:
        """Wait until every device has said offline (after a clean stop); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.snapshot().online:
                return True
            time.sleep(0.05)
        return False

    # paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._reason = reason
        self._answered.set()
        if not reason.is_failure:  # also after an automatic reconnect
            client.subscribe([(self.topics.all_devices(kind), 1) for kind in WATCHED])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            decoded = decode_topic(self.topics, message.topic, bytes(message.payload))
            with self._lock:
                self._tally(decoded)
        except DecodeError as exc:
            with self._lock:
                self._rejected += 1
            log.warning("dropped a message on %s: %s", message.topic, exc)
        except Exception:  # one bad message must never stop the monitor
            log.exception("could not tally a message on %s", message.topic)

    def _tally(self, msg: Any) -> None:
        tally = self._tallies.get(msg.device_id)
        if tally is None:  # a device of another run on a reused broker
            return
        if msg.model_version:
            tally.model_version = msg.model_version
        if isinstance(msg, Status):
            tally.online = msg.state == "online"
            tally.ever_online |= tally.online and msg.ts >= self.started_at - 1.0
            tally.site, tally.asset_type = msg.site or tally.site, msg.asset_type or tally.asset_type
        elif isinstance(msg, Stats):
            tally.stats_reports += 1
            tally.windows += msg.windows
            period = max(msg.period_end - msg.period_start, 1e-3)
            tally.rate, tally.rate_until = msg.windows / period, msg.period_end + 2 * period + 1.0
        elif isinstance(msg, ModelEvent):
            tally.model_events.append(f"{msg.event}:{msg.version}")
        elif isinstance(msg, Anomaly | Sample) and self._first_time(msg.msg_id):
            if isinstance(msg, Anomaly):
                tally.anomalies += 1
            else:
                tally.samples += 1

    def _first_time(self, msg_id: str) -> bool:
        if msg_id in self._seen_set:
            return False
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(msg_id)
        self._seen_set.add(msg_id)
        return True


# --- running ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetReport:
    """How a fleet run ended: what the hub side saw and what each agent said when it stopped."""

    snapshot: FleetSnapshot
    specs: tuple[DeviceSpec, ...]
    exit_codes: dict[str, int | None]
    pids: dict[str, int | None]
    agent_counters: dict[str, dict[str, Any] | None]
    elapsed_s: float
    stopped_by: str  # "duration", "exited" or "interrupted"
    peak_predictions_per_s: float

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.exit_codes.values())

    def table(self) -> str:
        head = ("device", "cohort", "windows", "anomalies", "samples", "model", "online", "exit")
        rows = [head]
        by_id = {d.device_id: d for d in self.snapshot.devices}
        for spec in self.specs:
            t = by_id[spec.device_id]
            rows.append((spec.device_id, spec.cohort, str(t.windows), str(t.anomalies), str(t.samples),
                         t.model_version or "-", "yes" if t.ever_online else "never",
                         str(self.exit_codes.get(spec.device_id))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)

    def to_json(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "elapsed_s": round(self.elapsed_s, 2), "stopped_by": self.stopped_by, "ok": self.ok,
            "devices_total": len(s.devices), "devices_ever_online": s.ever_online,
            "peak_predictions_per_s": round(self.peak_predictions_per_s, 2),
            "windows": s.total("windows"), "anomalies": s.total("anomalies"), "samples": s.total("samples"),
            "rejected_messages": s.rejected,
            "devices": {
                t.device_id: {"ever_online": t.ever_online, "online": t.online, "windows": t.windows,
                              "anomalies": t.anomalies, "samples": t.samples, "model_version": t.model_version,
                              "site": t.site, "asset_type": t.asset_type, "model_events": t.model_events,
                              "exit_code": self.exit_codes.get(t.device_id),
                              "pid": self.pids.get(t.device_id), "agent": self.agent_counters.get(t.device_id)}
                for t in s.devices
            },
        }


def supervise(fleet: Fleet, monitor: FleetMonitor, *, duration_s: float | None, progress_every_s: float = 5.0,
              progress: Callable[[str], None] = log.info) -> FleetReport:
    """Start the fleet, report progress until `duration_s`, every agent exits or Ctrl-C, then stop it all."""
    started = time.monotonic()
    stopped_by, peak = "duration", 0.0
    reported: set[str] = set()
    next_progress = started + progress_every_s
    try:
        fleet.start()
        while duration_s is None or time.monotonic() - started < duration_s:
            time.sleep(0.1)
            now = time.monotonic()
            if now >= next_progress:
                snap = monitor.snapshot()
                peak = max(peak, snap.predictions_per_s)
                progress(snap.progress_line(now - started))
                next_progress += progress_every_s
            for device, code in fleet.exit_codes().items():
                if code not in (None, 0) and device not in reported:
                    reported.add(device)
                    log.error("%s exited with code %s; its log ends:\n%s", device, code,
                              fleet.agents[device].log_tail())
            if not fleet.running():
                stopped_by = "exited"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupted"
        log.info("interrupted: stopping the fleet")
    finally:
        fleet.stop()
        if not monitor.wait_offline(3.0):
            log.warning("not every device said offline after stopping")
    elapsed = time.monotonic() - started
    snap = monitor.snapshot()
    return FleetReport(snap, tuple(fleet.specs), fleet.exit_codes(), {d: a.pid for d, a in fleet.agents.items()},
                       {d: a.counters() for d, a in fleet.agents.items()}, elapsed, stopped_by,
                       max(peak, snap.predictions_per_s))


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM and SIGHUP like Ctrl-C inside the block, so a stopped parent stops its fleet cleanly too.

    The agents run in process groups of their own and do not see a closing terminal's SIGHUP themselves.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

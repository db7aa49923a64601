"""Fleet load benchmark: a fleet's production traffic mix from many device identities through a real mosquitto to
real ``fleetloop hub ingest`` processes, on SQLite with one worker and on PostgreSQL with one and two.

Phases, each on a fresh store and share group (traffic mix: `bench/fleet_traffic.py`):

1. throughput: N messages published at once (QoS 1) into SQLite/1 worker, PostgreSQL/1, PostgreSQL/2;
   msgs/s = N stored / (go -> last row committed); CPU us/msg of the worker processes; lost = published but not
   stored.
2. real time: PostgreSQL/2 workers under the paced rate of ``--fleet`` devices (default 10,000) for
   ``--realtime-s``; p99 publish -> commit lag (the workers' own measure over every live record). The largest
   fleet sustained in real time is the PostgreSQL/2 rate over the per-device rate (about 1.2 messages a minute).
3. kill: PostgreSQL/2 workers, one SIGKILLed a quarter into a burst; what stays unstored while it is down (the
   broker keeps its share in its persistent session), then restarted with its client id: lost and duplicates.
4. drift: `DriftService.run` over a 24 h window on PostgreSQL holding ``--drift-devices`` devices' stats (one
   a minute, loaded in bulk: `bench/drift_scale.py`); its time scaled by devices to 10,000 devices (``drift_s``;
   the measured run is ``drift_measured_s``).

    .venv/bin/python bench/fleet_load.py [--messages N] [--fleet D] [--json]

With ``--json`` the last line of stdout is one JSON object (``sqlite_msgs_per_s``, ``pg_msgs_per_s``,
``pg2_msgs_per_s``, ``p99_ms``, ``lost``, ``duplicates``, ``max_devices_realtime``, ``drift_s``, …). Progress
goes to stderr. The default run takes 4-5 minutes (the drift pass loads 288,000 stats rows).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.fleet_traffic import MSGS_PER_DEVICE_S  # noqa: E402
from fleetloop.devbroker import HUB_USER, DevBroker  # noqa: E402
from fleetloop.devfleet import fleetloop  # noqa: E402
from fleetloop.devpostgres import PostgresServer, create_database, running_postgres  # noqa: E402

log = logging.getLogger("bench.fleet_load")

TARGETS = {"pg2_vs_pg": 1.6, "max_devices_realtime": 10_000, "p99_ms": 2000.0, "lost": 0, "duplicates": 0,
           "drift_s": 5.0}
TICK = os.sysconf("SC_CLK_TCK")
ROWS_PER_DAY = 1440  # an agent's stats every 60 s


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Worker:
    """One ``fleetloop hub ingest`` process; `status()` is its last JSON line after `stop()`."""

    def __init__(self, env: dict[str, str], client_id: str) -> None:
        self.client_id = client_id
        self.proc = subprocess.Popen(fleetloop("hub", "ingest"), stdout=subprocess.PIPE, text=True,
                                     env={**env, "FLEETLOOP_HUB_INGEST_CLIENT_ID": client_id})
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        first = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout, first), daemon=True)
        self._reader.start()
        if not first.wait(60) or "ready" not in self.lines[0]:
            self.proc.kill()
            raise SystemExit(f"ingest worker {client_id} did not start")
        self.cpu0 = cpu_s(self.proc.pid)

    def _read(self, out: IO[str], first: threading.Event) -> None:
        for line in out:
            self.lines.append(line)
            first.set()
        first.set()

    def cpu(self) -> float:
        return cpu_s(self.proc.pid) - self.cpu0

    def stop(self, sig: int = signal.SIGTERM) -> dict[str, Any]:
        self.proc.send_signal(sig)
        self.proc.wait(60)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return json.loads(self.lines[-1]) if sig == signal.SIGTERM and self.lines else {}


class Fleet:
    """The broker, and the environment of the workers of one phase (its store and share group)."""

    def __init__(self, broker: DevBroker, workdir: Path) -> None:
        self.broker, self.workdir = broker, workdir

    def env(self, phase: str, store_url: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.update({
            "FLEETLOOP_HUB_DEV_MODE": "true", "FLEETLOOP_HUB_DATA_DIR": str(self.workdir / phase),
            "FLEETLOOP_HUB_MQTT_HOST": self.broker.host, "FLEETLOOP_HUB_MQTT_PORT": str(self.broker.port),
            "FLEETLOOP_HUB_MQTT_PASSWORD": self.broker.password(HUB_USER),
            "FLEETLOOP_HUB_SHARE_GROUP": f"{phase}-{secrets.token_hex(3)}",
            "FLEETLOOP_HUB_INGEST_BURST_PER_DEVICE": "100000",
        })
        if store_url:
            env["FLEETLOOP_HUB_STORE_URL"] = store_url
        return env

    def publisher(self, messages: int, devices: int, rate: float, seed: int) -> subprocess.Popen[str]:
        job = {"host": self.broker.host, "port": self.broker.port, "prefix": self.broker.prefix, "user": HUB_USER,
               "password": self.broker.password(HUB_USER), "messages": messages, "devices": devices, "rate": rate,
               "seed": seed, "clients": 4}
        proc = subprocess.Popen([sys.executable, "-m", "bench.fleet_traffic", json.dumps(job)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("publisher did not start")
        return proc


def go(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return time.perf_counter()


def published(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait(120)
    proc.stdout.close()
    if proc.stdin is not None:
        proc.stdin.close()
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["stored_expected"] = result["published"] - result["kinds"]["status"]
    return result


def open_store(url: str | None, data_dir: Path) -> Any:
    from hub.store import open_store as opener

    return opener(url or f"sqlite:///{data_dir / 'hub.db'}")


def stored_rows(store: Any) -> int:
    c = store.counts()
    return int(c.anomalies + c.samples + c.stats + c.annotations + c.model_events)


class Poller:
    """Counts stored rows every 20 ms from `go` on, remembering when the count last changed."""

    def __init__(self, store: Any) -> None:
        self.store, self.rows, self.changed = store, stored_rows(store), time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            rows = stored_rows(self.store)
            if rows != self.rows:
                self.rows, self.changed = rows, time.perf_counter()

    def wait(self, n: int, timeout: float = 120.0, stall_s: float = 15.0) -> int:
        """Until `n` rows are stored or nothing changed for `stall_s`; the rows."""
        deadline = time.monotonic() + timeout
        while self.rows < n and time.monotonic() < deadline and time.perf_counter() - self.changed < stall_s:
            time.sleep(0.02)
        return self.rows

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_stored(store: Any, n: int, timeout: float = 120.0, stall_s: float = 15.0) -> tuple[int, float]:
    poller = Poller(store)
    try:
        return poller.wait(n, timeout, stall_s), poller.changed
    finally:
        poller.stop()


def migrated(url: str | None, data_dir: Path) -> Any:
    data_dir.mkdir(parents=True, exist_ok=True)
    return open_store(url, data_dir)


def throughput(fleet: Fleet, phase: str, url: str | None, workers: int, n: int, devices: int) -> dict[str, Any]:
    env = fleet.env(phase, url)
    store = migrated(url, fleet.workdir / phase)
    procs = [Worker(env, f"{phase}-w{i}") for i in range(workers)]
    pub = fleet.publisher(n, devices, 0.0, seed=len(phase))
    poller = Poller(store)
    t0 = go(pub)
    result = published(pub)  # every message PUBACKed by the broker; the workers ingest meanwhile
    rows = poller.wait(result["stored_expected"])
    poller.stop()
    last = poller.changed
    cpu = sum(w.cpu() for w in procs)
    statuses = [w.stop() for w in procs]
    store.close()
    processed = sum(s.get("processed", 0) for s in statuses)
    out = {"phase": phase, "workers": workers, "published": result["published"], "expected": result["stored_expected"],
           "stored": rows, "lost": max(0, result["stored_expected"] - rows), "s": last - t0,
           "msgs_per_s": processed / (last - t0), "cpu_us_per_msg": cpu / max(1, processed) * 1e6,
           "lag_p99_s": max((s["lag_p99_s"] or 0.0) for s in statuses)}
    log.info("%s: %d of %d stored in %.1f s: %.0f msgs/s, %.0f us CPU/msg", phase, rows, result["stored_expected"],
             out["s"], out["msgs_per_s"], out["cpu_us_per_msg"])
    return out


def realtime(fleet: Fleet, url: str, devices: int, seconds: float) -> dict[str, Any]:
    env = fleet.env("realtime", url)
    store = migrated(url, fleet.workdir / "realtime")
    procs = [Worker(env, f"realtime-w{i}") for i in range(2)]
    rate = devices * MSGS_PER_DEVICE_S
    pub = fleet.publisher(int(rate * seconds), devices, rate, seed=11)
    go(pub)
    result = published(pub)
    rows, _ = wait_stored(store, result["stored_expected"], timeout=60)
    statuses = [w.stop() for w in procs]
    store.close()
    p99 = max((s["lag_p99_s"] or 0.0) for s in statuses)
    p50 = max((s["lag_p50_s"] or 0.0) for s in statuses)
    behind = result["publish_s"] > seconds * 1.1  # the publisher itself could not keep the pace
    log.info("real time, %d devices (%.0f msgs/s): %d of %d stored, lag p50 %.0f ms p99 %.0f ms", devices, rate, rows,
             result["stored_expected"], p50 * 1000, p99 * 1000)
    return {"devices": devices, "rate": rate, "expected": result["stored_expected"], "stored": rows,
            "lost": max(0, result["stored_expected"] - rows), "p50_ms": p50 * 1000, "p99_ms": p99 * 1000,
            "publisher_behind": behind}


def kill(fleet: Fleet, url: str, n: int, devices: int, hold_s: float = 3.0) -> dict[str, Any]:
    env = fleet.env("kill", url)
    store = migrated(url, fleet.workdir / "kill")
    a, b = Worker(env, "kill-a"), Worker(env, "kill-b")
    pub = fleet.publisher(n, devices, 0.0, seed=13)
    go(pub)
    wait_stored(store, n // 4)
    b.stop(signal.SIGKILL)
    at_kill = stored_rows(store)
    result = published(pub)
    time.sleep(hold_s)  # with b dead: what a's share alone brings
    held = result["stored_expected"] - wait_stored(store, result["stored_expected"], timeout=30, stall_s=hold_s)[0]
    b = Worker(env, "kill-b")  # restarted with its client id: its session's messages come back
    rows, _ = wait_stored(store, result["stored_expected"], timeout=120)
    time.sleep(1.0)  # a late redelivery would add a row now
    rows = stored_rows(store)
    holes = store.sequence_holes(limit=100_000)
    for w in (a, b):
        w.stop()
    store.close()
    log.info("kill: %d stored when b died, %d held for it while down, %d of %d stored after its restart, %d holes",
             at_kill, held, rows, result["stored_expected"], len(holes))
    return {"expected": result["stored_expected"], "stored": rows, "at_kill": at_kill, "held_while_down": held,
            "lost": max(0, result["stored_expected"] - rows), "duplicates": max(0, rows - result["stored_expected"]),
            "sequence_holes": len(holes)}


def drift(server: PostgresServer, workdir: Path, devices: int) -> dict[str, Any]:
    """`DriftService.run` over 24 h of stats (one a minute, as agents send them) of `devices` devices on
    PostgreSQL, loaded in bulk and measured as `bench/drift_scale.py` does; scaled to 10,000 devices by devices
    (the roll-ups read and the reports written are per device)."""
    from bench.drift_scale import measure

    r = measure("postgres", devices, workdir, create_database(server, "drift"), bulk=True)
    return {"devices": devices, "rows": r["rows"], "s": r["run_s"], "reports": r["reports"],
            "s_at_10k": r["run_s_at_10k"], "read_s_at_10k": r["read_s_at_10k"]}


def report(sq: dict[str, Any], pg: dict[str, Any], pg2: dict[str, Any], rt: dict[str, Any], k: dict[str, Any],
           dr: dict[str, Any], n: int) -> tuple[str, dict[str, Any]]:
    max_devices = int(pg2["msgs_per_s"] / MSGS_PER_DEVICE_S)
    lost = sum(r["lost"] for r in (sq, pg, pg2, rt, k))
    summary: dict[str, Any] = {
        "sqlite_msgs_per_s": round(sq["msgs_per_s"], 1), "pg_msgs_per_s": round(pg["msgs_per_s"], 1),
        "pg2_msgs_per_s": round(pg2["msgs_per_s"], 1), "pg2_vs_pg": round(pg2["msgs_per_s"] / pg["msgs_per_s"], 2),
        "sqlite_cpu_us_per_msg": round(sq["cpu_us_per_msg"]), "pg_cpu_us_per_msg": round(pg["cpu_us_per_msg"]),
        "pg2_cpu_us_per_msg": round(pg2["cpu_us_per_msg"]),
        "p99_ms": round(rt["p99_ms"], 1), "p50_ms": round(rt["p50_ms"], 1), "realtime_devices": rt["devices"],
        "realtime_msgs_per_s": round(rt["rate"], 1), "realtime_publisher_behind": rt["publisher_behind"],
        "lost": lost, "duplicates": k["duplicates"], "kill_lost": k["lost"],
        "kill_held_while_down": k["held_while_down"],
        "kill_sequence_holes": k["sequence_holes"], "max_devices_realtime": max_devices,
        "drift_s": round(dr["s_at_10k"], 2), "drift_measured_s": round(dr["s"], 3), "drift_rows": dr["rows"],
        "drift_read_s": round(dr["read_s_at_10k"], 2), "drift_devices": dr["devices"], "messages": n,
        "msgs_per_device_s": round(MSGS_PER_DEVICE_S, 4),
    }
    met = {"pg2_vs_pg": summary["pg2_vs_pg"] >= TARGETS["pg2_vs_pg"],
           "max_devices_realtime": max_devices >= TARGETS["max_devices_realtime"],
           "p99_ms": rt["p99_ms"] < TARGETS["p99_ms"], "lost": lost == 0, "duplicates": k["duplicates"] == 0,
           "drift_s": dr["s_at_10k"] < TARGETS["drift_s"]}
    summary["targets_met"] = met
    lines = [
        f"fleetloop fleet load: {os.cpu_count()} CPUs, loopback, mosquitto, `fleetloop hub ingest` processes; "
        f"{n:,} messages per throughput pass in the fleet mix (~{MSGS_PER_DEVICE_S * 60:.2f} msgs/device-minute)",
        "",
        f"{'store / workers':<22}{'msgs/s':>9}{'CPU us/msg':>12}{'stored':>9}{'lost':>6}{'seconds':>9}",
    ]
    for name, r in (("SQLite / 1", sq), ("PostgreSQL / 1", pg), ("PostgreSQL / 2", pg2)):
        lines.append(f"{name:<22}{r['msgs_per_s']:>9,.0f}{r['cpu_us_per_msg']:>12,.0f}{r['stored']:>9,}"
                     f"{r['lost']:>6}{r['s']:>9.1f}")
    lines += [
        "",
        f"PostgreSQL 2 workers vs 1: {summary['pg2_vs_pg']:.2f}x (target >= {TARGETS['pg2_vs_pg']}x)",
        f"real time, {rt['devices']:,} devices ({rt['rate']:.0f} msgs/s, PostgreSQL / 2): publish -> commit p50 "
        f"{rt['p50_ms']:.0f} ms, p99 {rt['p99_ms']:.0f} ms (target < {TARGETS['p99_ms']:.0f}); "
        f"{rt['stored']:,} of {rt['expected']:,} stored",
        f"largest fleet in real time (PostgreSQL / 2 rate / per-device rate): {max_devices:,} devices "
        f"(target >= {TARGETS['max_devices_realtime']:,})",
        f"worker SIGKILLed mid-run: {k['at_kill']:,} stored at the kill, {k['held_while_down']:,} held by the broker "
        f"for its session while down, after its restart {k['stored']:,} of {k['expected']:,}: lost {k['lost']}, "
        f"duplicates {k['duplicates']}, sequence holes {k['sequence_holes']}",
        f"drift: DriftService.run over 24 h of {dr['devices']} devices ({dr['rows']:,} stats rows) {dr['s']:.2f} s; "
        f"scaled to 10,000 devices {dr['s_at_10k']:.1f} s, its read {dr['read_s_at_10k']:.1f} s "
        f"(target < {TARGETS['drift_s']:g} s)",
        "",
        "targets: " + ", ".join(f"{key} {'met' if ok else 'NOT met'}" for key, ok in met.items()),
    ]
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/fleet_load.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per throughput pass")
    parser.add_argument("--devices", type=int, default=1000, help="device identities in the throughput passes")
    parser.add_argument("--fleet", type=int, default=10_000, help="devices simulated in the real-time pass")
    parser.add_argument("--realtime-s", type=float, default=15.0, help="length of the real-time pass")
    parser.add_argument("--drift-devices", type=int, default=200,
                        help="devices with 24 h of stats for the drift run (200: ~1-2 minutes of bulk load)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="fleetloop-fleet-load-") as tmp, running_postgres() as server:
        workdir = Path(tmp)
        with DevBroker(workdir / "broker") as broker:
            fleet = Fleet(broker, workdir)
            sq = throughput(fleet, "sqlite1", None, 1, args.messages, args.devices)
            pg = throughput(fleet, "pg1", create_database(server, "pg1"), 1, args.messages, args.devices)
            pg2 = throughput(fleet, "pg2", create_database(server, "pg2"), 2, args.messages, args.devices)
            rt = realtime(fleet, create_database(server, "realtime"), args.fleet, args.realtime_s)
            k = kill(fleet, create_database(server, "kill"), args.messages, args.devices)
        dr = drift(server, workdir, args.drift_devices)
    table, summary = report(sq, pg, pg2, rt, k, dr, args.messages)
    sys.stdout.write(table)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

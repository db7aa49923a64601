"""Chaos run: a production-mode fleet under steady load while its parts are killed, its disk filled and bad input
replayed; then it drains and counts what was published, stored, lost, duplicated and served unapproved.

    .venv/bin/python bench/chaos.py [--duration 120] [--seed S] [--agents 4] [--rate 20] [--ingest-workers 2]

The fleet is `tests.field.harness.FieldFleet` (ACL broker, ``hub serve`` not in dev mode, agents with the hub's
key pinned) plus separate ``fleetloop hub ingest`` workers in the same share group. The last line of stdout is one
JSON object (``published``, ``stored``, ``lost``, ``duplicates``, ``unapproved_served``, restarts, …); the exit
code is 1 if a target (0 lost, 0 duplicates, 0 unapproved served) is missed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.chaos_attacks import Attacks  # noqa: E402
from bench.chaos_count import Tally, count  # noqa: E402
from fleetloop.devbroker import DevBroker  # noqa: E402
from tests.field.harness import FieldFleet, fleetloop  # noqa: E402

log = logging.getLogger("bench.chaos")

DOWN_S = (0.5, 3.0)  # how long a killed part stays down
PAUSE_S = (1.0, 3.0)  # between two faults
DRAIN_TIMEOUT_S = 120.0


class Chaos:
    """The fleet, its extra ingest workers and the fault schedule; counts what it did."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        self.rng = random.Random(args.seed)
        self.broker = DevBroker(root / "broker")
        self.broker.start()
        self.fleet = FieldFleet(root / "fleet", self.broker, build_model(root / "model"))
        self.devices = [f"dev-{i}" for i in range(args.agents)]
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: Counter[str] = Counter()
        self.disk: Path | None = None
        self.disk_device: str | None = None
        self.notes: list[str] = []

    # -- parts ----------------------------------------------------------------------------------------
    def agent_settings(self, device: str) -> dict[str, Any]:
        rate = self.args.rate
        settings: dict[str, Any] = {
            "stats_interval_s": 2.0, "sample_rate": 0.05, "hub_ack_timeout_s": 3.0, "hub_ack_max_s": 15.0,
            "retry_max_s": 5.0, "ack_timeout_s": 5.0,
            "source": {"kind": "sim", "rate": rate, "seed": sum(map(ord, device)) + self.args.seed,
                       "sim_config": {"life_steps": (150, 300), "degradation_tau": (30.0, 60.0),
                                      "random_start_age": True}},
        }
        if device == self.disk_device and self.disk is not None:
            settings.update(data_dir=str(self.disk / device), disk_reserve_mb=1.0)
        return settings

    def start_agent(self, device: str, **extra: Any) -> None:
        self.fleet.start_agent(device, **{**self.agent_settings(device), **extra})

    def start_worker(self, name: str) -> None:
        fleet = self.fleet
        log_file = (fleet.root / f"{name}.log").open("a")
        with log_file:
            self.workers[name] = subprocess.Popen(
                fleetloop("hub", "ingest", "--data-dir", str(fleet.hub_dir), "--mqtt-host", self.broker.host,
                          "--mqtt-port", str(self.broker.port)),
                env=fleet.hub_env(FLEETLOOP_HUB_INGEST_CLIENT_ID=f"{fleet.share_group}-{name}"),
                stdout=log_file, stderr=subprocess.STDOUT)

    def stop_worker(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def mount_disk(self) -> None:
        if self.args.no_disk or not self.devices:
            return
        mount = self.root / "disk"
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            note = f"disk fill skipped: cannot mount a tmpfs ({done.stderr.strip() or 'root needed'})"
            log.warning(note)
            self.notes.append(note)
            return
        self.disk, self.disk_device = mount, self.devices[-1]

    def agent_db(self, device: str) -> Path:
        if device == self.disk_device and self.disk is not None:
            return self.disk / device / "agent.db"
        return self.fleet.agent_db(device)

    def close(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        self.fleet.close()
        self.broker.stop()
        if self.disk is not None:
            subprocess.run(["umount", "-l", str(self.disk)], check=False)

    # -- the run ---------------------------------------------------------------------------------------
    def setup(self, attacks: Attacks) -> None:
        self.mount_disk()
        self.fleet.start_hub()
        for i in range(self.args.ingest_workers):
            self.start_worker(f"ingest-{i}")
        if not self.args.no_rollout:
            attacks.register_versions()
        for device in self.devices:
            self.start_agent(device)
        attacks.setup(rollout=not self.args.no_rollout)

    def run(self, attacks: Attacks) -> None:
        """Faults at random until the deadline; every part is running again when it returns."""
        deadline = time.monotonic() + self.args.duration
        faults = ["hub", "ingest", "broker", "agent", "agent", "bad_input", "bad_input", "assign"]
        if not self.args.ingest_workers:
            faults.remove("ingest")
        disk_at = time.monotonic() + self.args.duration * 0.3 if self.disk else None
        rollback_at = None if self.args.no_rollout else time.monotonic() + self.args.duration * 0.5
        while time.monotonic() < deadline:
            if disk_at is not None and time.monotonic() >= disk_at:
                self.fill_disk(min(20.0, max(3.0, deadline - time.monotonic() - 2)))
                disk_at = None
                continue
            if rollback_at is not None and time.monotonic() >= rollback_at:
                attacks.rollback()
                rollback_at = None
                continue
            fault = self.rng.choice(faults)
            log.info("fault: %s", fault)
            if fault == "bad_input":
                attacks.bad_input(self.rng.choice(self.devices))
            elif fault == "assign":
                attacks.bad_assignment(self.rng)
            else:
                self.kill(fault)
            time.sleep(self.rng.uniform(*PAUSE_S))

    def kill(self, part: str) -> None:
        down = self.rng.uniform(*DOWN_S)
        if part == "hub":
            self.fleet.stop_hub(signal.SIGKILL)
            time.sleep(down)
            self.fleet.start_hub()
        elif part == "ingest":
            name = self.rng.choice(sorted(self.workers))
            self.stop_worker(name, signal.SIGKILL)
            time.sleep(down)
            self.start_worker(name)
        elif part == "broker":
            pid = self.broker.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            self.broker.wait(10)
            time.sleep(down)
            self.broker.start()
        else:
            part = "agent"
            device = self.rng.choice(self.devices)
            self.fleet.stop_agent(device, signal.SIGKILL)
            time.sleep(down)
            self.start_agent(device)
        self.restarts[part] += 1

    def fill_disk(self, hold_s: float) -> None:
        assert self.disk is not None
        filler = self.disk / "filler"
        log.info("disk: filling %s for %.0f s", self.disk, hold_s)
        fill(filler)
        time.sleep(hold_s)
        filler.unlink()
        self.restarts["disk_fills"] += 1

    def drain(self) -> dict[str, int]:
        """Every part up; agents stopped, then run without readings until their outboxes are empty (or timeout)."""
        if not self.broker.running:
            self.broker.start()
        for device in self.devices:
            self.fleet.stop_agent(device)  # graceful: a last stats message, up to 5 s of draining
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        left: dict[str, int] = {}
        for device in self.devices:
            # no new windows (a reading every 1000 s) and no stats until stopped: only the outbox moves
            self.start_agent(device, stats_interval_s=3600.0, source={**self.agent_settings(device)["source"],
                                                                      "rate": 0.001})
        for device in self.devices:
            while outbox_rows(self.agent_db(device)) and time.monotonic() < deadline:
                time.sleep(0.5)
            self.fleet.stop_agent(device)  # its final stats message drains in the agent's stop
            left[device] = outbox_rows(self.agent_db(device))
        for name in list(self.workers):
            self.stop_worker(name)
        time.sleep(1.0)  # the hub's ingest commits what the last drains sent
        return left


def fill(path: Path) -> None:
    """Write zeros to `path` until the disk is full."""
    with path.open("wb", buffering=0) as f:
        for size in (1 << 20, 65536, 4096, 512):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                continue


def outbox_rows(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def build_model(out: Path) -> Path:
    """The initial model version, built by the real recipe (about 2 s)."""
    from models.initial import build_initial

    build_initial(out / "v1", seed=7, n_machines=30, steps=2500)
    return out / "v1"


def table(t: Tally, result: dict[str, Any]) -> str:
    lines = [f"{'device':<10} {'published':>10} {'stored':>8} {'lost':>6} {'dups':>6} {'outbox left':>12}"]
    for d in sorted(t.published):
        lines.append(f"{d:<10} {t.published[d]:>10} {t.stored.get(d, 0):>8} "
                     f"{t.published[d] - t.stored.get(d, 0):>6} {t.duplicates.get(d, 0):>6} "
                     f"{t.outbox_left.get(d, 0):>12}")
    lines.append("")
    for key in ("published", "stored", "lost", "duplicates", "unapproved_served", "agent_restarts", "hub_restarts",
                "ingest_restarts", "broker_restarts", "disk_fills", "bad_inputs", "bad_assignments",
                "dead_letters", "duration_s", "seed"):
        lines.append(f"{key:<20} {result[key]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of faults (default 120)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--agents", type=int, default=4, help="agents under load (default 4)")
    parser.add_argument("--rate", type=float, default=20.0, help="readings/s per agent (default 20)")
    parser.add_argument("--ingest-workers", type=int, default=2, help="`hub ingest` workers beside `hub serve`")
    parser.add_argument("--no-disk", action="store_true", help="do not fill a disk")
    parser.add_argument("--no-rollout", action="store_true", help="no canary rollout and rollback (faster start)")
    parser.add_argument("--workdir", type=Path, help="keep the fleet here (default: a temporary dir, removed)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleetloop-chaos-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        chaos = Chaos(root, args)
        attacks = Attacks(chaos.fleet, chaos.devices, root / "versions", chaos.agent_db)
        try:
            chaos.setup(attacks)
            chaos.run(attacks)
            left = chaos.drain()
            tally = count(chaos.fleet, chaos.agent_db, chaos.devices, attacks.approved(), attacks.unapproved_after())
        finally:
            attacks.close()
            chaos.close()
    tally.outbox_left = left
    published, stored = sum(tally.published.values()), sum(tally.stored.values())
    result = {
        "published": published, "stored": stored, "lost": published - stored,
        "duplicates": sum(tally.duplicates.values()), "unapproved_served": tally.unapproved,
        "unapproved_detail": tally.unapproved_detail,
        "agent_restarts": chaos.restarts["agent"], "hub_restarts": chaos.restarts["hub"],
        "ingest_restarts": chaos.restarts["ingest"], "broker_restarts": chaos.restarts["broker"],
        "disk_fills": chaos.restarts["disk_fills"], "bad_inputs": attacks.bad_inputs,
        "bad_assignments": attacks.bad_assignments, "refusals": tally.refusals,
        "dead_letters": tally.dead_letters, "agent_dropped": tally.agent_dropped,
        "outbox_left": sum(left.values()), "duration_s": round(time.monotonic() - started, 1),
        "chaos_s": args.duration, "seed": args.seed, "agents": args.agents, "notes": chaos.notes,
    }
    print(table(tally, result))
    print(json.dumps(result))
    missed = result["lost"] != 0 or result["duplicates"] != 0 or result["unapproved_served"] != 0
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

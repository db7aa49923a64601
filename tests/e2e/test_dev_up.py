"""``fleetloop dev up`` as a person runs it: a process in a terminal, its printed URL and token, Ctrl-C at the end.

The fleet is production-like (not dev mode): the API refuses requests without the printed token; every simulated
agent reports; ``fleetloop dev drift`` restarts an agent with a sensor offset; Ctrl-C (SIGINT to the terminal's
process group) stops the agents, the hub and the broker, and leaves no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetloop.devbroker import free_port

pytestmark = pytest.mark.slow


def dev(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetloop.cli", "dev", *args]


def processes_under(root: Path) -> list[str]:
    """Command lines of live processes that name `root` (the broker, hub and agents of that fleet)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root) in cmdline and state != "Z":
            found.append(f"{pid}: {cmdline}")
    return found


class Terminal:
    """`fleetloop dev up` in a process group of its own, as a shell runs a foreground job; its output in a file."""

    def __init__(self, root: Path, *args: str) -> None:
        self.out = root.parent / "dev-up.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(dev("up", "--dir", str(root), *args), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, process_group=0)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (match := re.search(pattern, self.text(), re.MULTILINE)) is None:
            assert self.proc.poll() is None, f"dev up exited {self.proc.returncode}:\n{self.text()[-4000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} after {timeout:.0f} s:\n{self.text()[-4000:]}"
            time.sleep(0.2)
        return match

    def ctrl_c(self, timeout: float = 90.0) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what the terminal sends its foreground job
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "dev"
    yield root
    for line in processes_under(root):  # a failed test must not leave a fleet running
        os.kill(int(line.split(":")[0]), signal.SIGKILL)


def test_dev_up_runs_a_fleet_until_ctrl_c_and_leaves_nothing_behind(root: Path) -> None:
    terminal = Terminal(root, "--agents", "3")
    try:
        url = terminal.wait_for(r"^API\s+(http://\S+)")[1]
        token = terminal.wait_for(r"^token\s+operator\s+(\S+)")[1]
        exports = terminal.wait_for(r"export FLEETLOOP_HUB_URL=(\S+) FLEETLOOP_HUB_TOKEN=(\S+)")
        assert (exports[1], exports[2]) == (url, token)
        terminal.wait_for(r"^fleet ready: 3 devices online")
        assert httpx.get(f"{url}/devices", timeout=10).status_code == 401  # not dev mode: tokens are required
        assert "dev_mode" in (health := httpx.get(f"{url}/health", timeout=10).json()) and not health["dev_mode"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
            ready = time.time()
            deadline = time.monotonic() + 60

            def reporting() -> dict[str, dict]:
                return {d["device_id"]: d for d in api.get("/devices").json()
                        if d["online"] and d["model_version"] == "v1" and (d["last_seen"] or 0) > ready}

            while len(reporting()) < 3:
                assert time.monotonic() < deadline, api.get("/devices").json()
                time.sleep(0.5)
            assert sorted(reporting()) == ["dev-0", "dev-1", "dev-2"]
            assert {d["cohort"] for d in reporting().values()} != {None}  # planned cohorts (site/asset type)

            before = {line for line in processes_under(root) if "dev-1.toml" in line}
            drift = subprocess.run(dev("drift", "--dir", str(root), "--devices", "dev-1", "--sensor", "temperature",
                                       "--offset", "5"), capture_output=True, text=True, timeout=120, check=False)
            assert drift.returncode == 0, drift.stdout + drift.stderr
            assert "dev-1: restarted with temperature +5" in drift.stdout
            after = {line for line in processes_under(root) if "dev-1.toml" in line}
            assert len(after) == 1 and after != before  # a new agent process for dev-1
            assert "sensor_offset" in (root / "agents" / "dev-1.toml").read_text()
            assert "sensor_offset" not in (root / "agents" / "dev-0.toml").read_text()
            again = time.time()
            deadline = time.monotonic() + 60
            while (api.get("/devices/dev-1").json().get("last_seen") or 0) <= again:
                assert time.monotonic() < deadline, "dev-1 did not report after its restart"
                time.sleep(0.5)
        assert processes_under(root), "the fleet should be running"
        assert terminal.ctrl_c() == 0, terminal.text()[-3000:]
        assert "fleet stopped" in terminal.text()
        assert processes_under(root) == []
        assert not (root / "devup.pid").exists()
    finally:
        terminal.kill()


def test_a_busy_api_port_is_one_line_and_exit_2(root: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        out = subprocess.run(dev("up", "--dir", str(root), "--api-port", str(port)), capture_output=True, text=True,
                             timeout=60, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"fleetloop dev: error: port {port} is busy: choose another with "
                                               "--api-port, or stop what listens there"]
    assert processes_under(root) == []

"""``fleetloop dev up`` as a person runs it: a process in a terminal, its printed URL and token, Ctrl-C at the end.

The fleet is production-like (not dev mode): the API refuses requests without the printed token; every simulated
agent reports; ``fleetloop dev drift`` restarts an agent with a sensor offset; Ctrl-C (SIGINT to the terminal's
process group) stops the agents, the hub and the broker, and leaves no process behind.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fleetloop.devbroker import free_port
from tests.e2e.terminal import Terminal, dev, processes_under

pytestmark = pytest.mark.slow


def test_dev_up_runs_a_fleet_until_ctrl_c_and_leaves_nothing_behind(dev_root: Path) -> None:
    root = dev_root  # holding the session's first model: `dev up` reuses it
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

"""A real mosquitto running the repository's config with a given password file and ACL (never port 1883)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fleetloop.devbroker import HOST, find_config_dir, find_mosquitto, free_port, render_config


@contextmanager
def mosquitto_with(passwd: Path, acl: Path, workdir: Path, timeout: float = 10.0) -> Iterator[int]:
    """Run mosquitto on a free loopback port with copies of `passwd` and `acl`; yields the port."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (workdir / "data").mkdir(mode=0o700, exist_ok=True)
    for source, name in ((passwd, "passwd"), (acl, "acl")):
        shutil.copyfile(source, workdir / name)
        (workdir / name).chmod(0o600)
    port = free_port()
    assert port != 1883
    run_as = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
    conf = render_config((find_config_dir() / "mosquitto.conf").read_text(), port=port, workdir=workdir,
                         run_as=run_as)
    (workdir / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([find_mosquitto(), "-c", str(workdir / "mosquitto.conf")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"mosquitto exited: {(workdir / 'mosquitto.log').read_text()[-2000:]}"
            try:
                socket.create_connection((HOST, port), timeout=1.0).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen in time"
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

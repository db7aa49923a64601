"""A real mosquitto running the repository's config (as the dev broker renders it, or as `provision` renders it for
compose, TLS included), never on port 1883 or 8883."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fleetloop.devbroker import HOST, find_config_dir, find_mosquitto, free_port, render_config

# The keys of a rendered config that name a file or directory.
PATH_KEYS = ("password_file", "acl_file", "persistence_location", "cafile", "certfile", "keyfile")


def _run_as() -> str | None:
    """Keeps a root-started mosquitto from switching to the `mosquitto` user, which could not read private dirs."""
    return pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None


@contextmanager
def _running(conf: Path, port: int, log: Callable[[], str], timeout: float) -> Iterator[int]:
    assert port not in (1883, 8883)
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"mosquitto exited: {log()[-2000:]}"
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


@contextmanager
def mosquitto_with(passwd: Path, acl: Path, workdir: Path, timeout: float = 10.0) -> Iterator[int]:
    """Run mosquitto on a free loopback port with copies of `passwd` and `acl`; yields the port."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (workdir / "data").mkdir(mode=0o700, exist_ok=True)
    for source, name in ((passwd, "passwd"), (acl, "acl")):
        shutil.copyfile(source, workdir / name)
        (workdir / name).chmod(0o600)
    port = free_port()
    conf = render_config((find_config_dir() / "mosquitto.conf").read_text(), port=port, workdir=workdir,
                         run_as=_run_as())
    (workdir / "mosquitto.conf").write_text(conf)
    log = workdir / "mosquitto.log"
    with _running(workdir / "mosquitto.conf", port, lambda: log.read_text() if log.exists() else "", timeout):
        yield port


@contextmanager
def mosquitto_from(conf: str, translate: Callable[[str], Path], workdir: Path, timeout: float = 10.0) -> Iterator[int]:
    """Run a deployment's rendered `conf` as written, but on a free loopback port, each file path through `translate`
    (container path -> host path) and logging to a file; yields the port."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    port, out = free_port(), []
    listeners = 0
    for line in conf.splitlines():
        key, _, value = line.partition(" ")
        if key == "listener":
            listeners += 1
            line = f"listener {port} {HOST}"
        elif key in PATH_KEYS:
            line = f"{key} {translate(value.strip())}" + ("/" if value.strip().endswith("/") else "")
        elif key in ("log_dest", "user"):
            continue
        out.append(line)
    assert listeners == 1, f"the rendered config has {listeners} listeners"
    log = workdir / "mosquitto.log"
    out.append(f"log_dest file {log}")
    if _run_as():
        out.append(f"user {_run_as()}")
    (workdir / "mosquitto.conf").write_text("\n".join(out) + "\n")
    assert not re.search(r"^\S+ /mosquitto/", (workdir / "mosquitto.conf").read_text(), re.M)
    with _running(workdir / "mosquitto.conf", port, lambda: log.read_text() if log.exists() else "", timeout):
        yield port

"""`DevBroker`: a mosquitto child process running the project's config on a free loopback port.

It renders ``mosquitto/mosquitto.conf`` and ``mosquitto/acl`` into a private work directory (every path
inside the work dir, the topic prefix substituted), creates a ``hub`` user and device users with random
passwords, and runs ``mosquitto -c``. Stdlib only, so the agent extra is enough.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from fleetloop.devbroker.config import HOST, HUB_USER, find_config_dir, find_mosquitto, render_acl, render_config
from fleetloop.devbroker.passwords import new_password, passwd_line, write_private
from fleetloop.devbroker.probe import free_port, mqtt_connack, port_is_free
from shared.errors import ConfigError
from shared.topics import DEFAULT_PREFIX, Topics, validate_device_id

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"


class DevBroker:
    """A mosquitto child process running the project's config on a free loopback port.

    Credentials (``hub`` plus one user per device, username == device id) get random passwords and
    are kept in ``credentials.json`` (mode 0600) in the work dir, so restarting on the same work dir
    keeps them. `stop()` sends SIGTERM so the broker saves sessions and queued messages; `start()`
    again reuses the same port and work dir.
    """

    host = HOST

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        devices: Iterable[str] = (),
        prefix: str = DEFAULT_PREFIX,
        config_dir: str | os.PathLike[str] | None = None,
        mosquitto: str | None = None,
    ) -> None:
        self.prefix = Topics(prefix).prefix
        self.config_dir = Path(config_dir) if config_dir else find_config_dir()
        self.mosquitto = mosquitto or find_mosquitto()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fleetloop-broker-")).resolve()
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._users: dict[str, str] = {}  # username -> password
        self._hashed: dict[str, str] = {}  # username -> passwd file line
        self._proc: subprocess.Popen[bytes] | None = None
        saved_port = self._load_credentials()
        if port is None:  # a reused work dir keeps its port when it can, so clients keep working
            port = saved_port if saved_port and port_is_free(saved_port) else free_port()
        self.port = port
        self._users.setdefault(HUB_USER, new_password())
        for device_id in devices:
            self._new_user(device_id)

    # --- public surface ------------------------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, str]:
        """Username -> password for the hub and every device (a copy)."""
        return dict(self._users)

    @property
    def devices(self) -> list[str]:
        return [user for user in self._users if user != HUB_USER]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def credentials_path(self) -> Path:
        return self.workdir / CREDENTIALS_FILE

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def password(self, username: str) -> str:
        try:
            return self._users[username]
        except KeyError:
            raise ConfigError(f"the dev broker has no user {username!r}") from None

    def start(self, timeout: float = 10.0) -> None:
        """Render the config, write credentials and run mosquitto until it accepts the hub's login."""
        if self.running:
            return
        if not port_is_free(self.port):
            raise ConfigError(f"port {self.port} on {self.host} is busy: choose another with --port, or "
                              "stop what is listening there")
        (self.workdir / "data").mkdir(mode=0o700, exist_ok=True)
        conf_text = (self.config_dir / "mosquitto.conf").read_text()
        run_as = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
        conf = render_config(conf_text, port=self.port, workdir=self.workdir, run_as=run_as)
        write_private(self.workdir / "mosquitto.conf", conf)
        write_private(self.workdir / "acl", render_acl((self.config_dir / "acl").read_text(), self.prefix))
        self._write_passwd()
        self._write_credentials()
        with open(self.workdir / "mosquitto.out", "ab") as out:  # errors before logging is set up
            self._proc = subprocess.Popen(
                [self.mosquitto, "-c", str(self.workdir / "mosquitto.conf")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                process_group=0,  # a terminal's Ctrl-C must not kill the broker before its clients stop
            )
        try:
            self._wait_accepting(HUB_USER, timeout)
        except BaseException:
            self.stop()
            raise
        log.debug("dev broker up on %s (pid %s, workdir %s)", self.url, self._proc.pid, self.workdir)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto (pid %s) ignored SIGTERM for %.0f s: killing it", proc.pid, timeout)
                proc.kill()
                proc.wait()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` seconds for mosquitto to exit; its exit code, or None if still running."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def add_device(self, device_id: str, timeout: float = 10.0) -> str:
        """Create a device user (or return its existing password); a running broker reloads on SIGHUP."""
        known = device_id in self._users
        password = self._new_user(device_id)
        if known:
            return password
        if self.running:
            assert self._proc is not None
            self._write_passwd()
            self._write_credentials()
            self._proc.send_signal(signal.SIGHUP)
            self._wait_accepting(device_id, timeout)
        return password

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's log (and of its stdout, where config errors go)."""
        tail: list[str] = []
        for path in (self.workdir / "mosquitto.out", self.log_path):
            if path.exists():
                tail += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tail[-lines:])

    def close(self) -> None:
        """Stop the broker and remove the work dir if this broker created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DevBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"DevBroker({self.url}, {state}, workdir={str(self.workdir)!r})"

    # --- internals ---------------------------------------------------------------------------------------

    def _new_user(self, device_id: str) -> str:
        validate_device_id(device_id)
        if device_id == HUB_USER:
            raise ConfigError(f"{HUB_USER!r} is the hub's username and cannot be a device id")
        return self._users.setdefault(device_id, new_password())

    def _wait_accepting(self, username: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ConfigError(f"mosquitto exited (code {code}) on port {self.port}; log tail:\n"
                                  f"{self.log_tail()}")
            try:
                rc = mqtt_connack(self.host, self.port, username, self._users[username], timeout=1.0)
                if rc == 0:
                    return
                last = f"CONNACK return code {rc}"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ConfigError(f"mosquitto on port {self.port} did not accept {username!r} within "
                                  f"{timeout:.0f} s ({last}); log tail:\n{self.log_tail()}")
            time.sleep(0.02)

    def _write_passwd(self) -> None:
        """Hash new users and replace the passwd file.

        Existing users keep their hash, so connected clients are not re-authenticated on reload.
        """
        for user, password in self._users.items():
            if user not in self._hashed:
                self._hashed[user] = passwd_line(user, password)
        write_private(self.workdir / "passwd", "".join(f"{self._hashed[u]}\n" for u in self._users))

    def _write_credentials(self) -> None:
        data = {"host": self.host, "port": self.port, "prefix": self.prefix, "hub_user": HUB_USER,
                "users": self._users}
        write_private(self.credentials_path, json.dumps(data, indent=2) + "\n")

    def _load_credentials(self) -> int | None:
        """Reuse the passwords (and return the port) a previous run saved in this work dir."""
        if not self.credentials_path.exists():
            return None
        try:
            saved = json.loads(self.credentials_path.read_text())
            self._users.update({str(user): str(password) for user, password in saved["users"].items()})
            return int(saved["port"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{self.credentials_path} is not a dev-broker credentials file ({exc!r}): "
                              "remove it to start with new credentials") from None

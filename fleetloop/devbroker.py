"""A local Mosquitto for development and tests, rendered from the project's own config (``mosquitto/``).

`DevBroker` renders ``mosquitto/mosquitto.conf`` and ``mosquitto/acl`` into a private work directory
(a loopback listener on a free port, every path inside the work dir, the topic prefix substituted),
creates a ``hub`` user and device users with random passwords, and runs ``mosquitto -c`` as a child
process. ``fleetloop broker run`` is the CLI around it. Stdlib only, so the agent extra is enough.

The credential helpers (`new_password`, `passwd_line`, `render_acl`, `write_private`) are shared with
`fleetloop.provision`, which writes the same files for docker compose.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType, TracebackType

from shared.errors import ConfigError
from shared.topics import DEFAULT_PREFIX, Topics, validate_device_id

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
HUB_USER = "hub"  # the ACL grants this username the whole prefix (mosquitto/acl, `user hub`)
CREDENTIALS_FILE = "credentials.json"
_INSTALL_HINT = "install it (sudo apt-get install mosquitto, brew install mosquitto, or `make mosquitto`)"
# Keys the renderer must find in mosquitto.conf: fail loudly rather than run a broker without auth.
_REQUIRED_KEYS = ("listener", "allow_anonymous", "password_file", "acl_file", "persistence_location")
# Listener TLS options make no sense on the loopback dev listener.
_TLS_KEYS = {"cafile", "capath", "certfile", "keyfile", "crlfile", "ciphers", "tls_version",
             "require_certificate", "use_identity_as_username", "use_subject_as_username"}


def find_mosquitto() -> str:
    """The mosquitto binary: ``FLEETLOOP_MOSQUITTO``, then PATH, then the usual sbin directories."""
    env = os.environ.get("FLEETLOOP_MOSQUITTO")
    if env:
        if not os.access(env, os.X_OK):
            raise ConfigError(f"FLEETLOOP_MOSQUITTO={env} is not an executable file")
        return env
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto",
                      "/opt/homebrew/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(f"mosquitto not found: {_INSTALL_HINT}, or set FLEETLOOP_MOSQUITTO to its path")


# Mosquitto 2.x password hashes: ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``, what
# `mosquitto_passwd` writes (12-byte salt, 64-byte hash, 101 iterations by default). Hashing here needs no
# mosquitto tools, so a container without them (docker compose) can write the password file. Passwords are
# 24 random bytes, so the low iteration count costs no strength and keeps every CONNECT cheap.
_PBKDF2_PREFIX = "$7$"
_PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12
_HASH_BYTES = 64


def new_password() -> str:
    """A random broker password (24 bytes, URL-safe text)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = _PBKDF2_ITERATIONS) -> str:
    """The mosquitto 2.x password-file hash of `password` (a random salt unless one is given)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    return f"{_PBKDF2_PREFIX}{iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_matches(hashed: str, password: str) -> bool:
    """Whether a ``$7$`` password-file hash is the hash of `password` (False for any other format)."""
    if not hashed.startswith(_PBKDF2_PREFIX):
        return False
    try:
        iterations, salt, digest = hashed.removeprefix(_PBKDF2_PREFIX).split("$")
        expected = hash_password(password, salt=base64.b64decode(salt, validate=True), iterations=int(iterations))
    except ValueError:  # wrong field count, bad base64 or iteration count
        return False
    return hmac.compare_digest(expected.rsplit("$", 1)[1], digest)


def passwd_line(username: str, password: str) -> str:
    """One line of a mosquitto password file (no newline)."""
    if not username or ":" in username or "\n" in username:
        raise ConfigError(f"{username!r} cannot be a broker username")
    return f"{username}:{hash_password(password)}"


def find_config_dir() -> Path:
    """The broker config: ``FLEETLOOP_MOSQUITTO_DIR``, else the repository's ``mosquitto/`` directory."""
    env = os.environ.get("FLEETLOOP_MOSQUITTO_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "mosquitto"
    if not (path / "mosquitto.conf").is_file() or not (path / "acl").is_file():
        raise ConfigError(f"no mosquitto.conf and acl in {path}: set FLEETLOOP_MOSQUITTO_DIR to the "
                          "directory holding fleetloop's broker config")
    return path


def render_config(conf: str, *, port: int, workdir: Path, run_as: str | None = None) -> str:
    """Rewrite the real mosquitto.conf for a loopback dev broker whose files all live in `workdir`.

    `run_as` keeps a root-started mosquitto from switching to the `mosquitto` user, which could not
    read a private work directory.
    """
    out = [f"# Rendered by fleetloop.devbroker for 127.0.0.1:{port}; edit mosquitto/mosquitto.conf."]
    seen: set[str] = set()
    for line in conf.splitlines():
        key = line.split(None, 1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if key == "listener":
            if "listener" in seen:
                raise ConfigError("mosquitto.conf has several listeners; the dev broker renders exactly one")
            line = f"listener {port} {HOST}"
        elif key == "password_file":
            line = f"password_file {workdir / 'passwd'}"
        elif key == "acl_file":
            line = f"acl_file {workdir / 'acl'}"
        elif key == "persistence_location":
            line = f"persistence_location {workdir / 'data'}"
        elif key in ("log_dest", "user", "pid_file") or key in _TLS_KEYS:
            continue
        seen.add(key)
        out.append(line)
    missing = [k for k in _REQUIRED_KEYS if k not in seen]
    if missing:
        raise ConfigError(f"mosquitto.conf has no {', '.join(missing)} line: the dev broker refuses to guess")
    out.append(f"log_dest file {workdir / 'mosquitto.log'}")
    if run_as:
        out.append(f"user {run_as}")
    return "\n".join(out) + "\n"


def render_acl(acl: str, prefix: str) -> str:
    """Substitute `prefix` for the default first topic level on every ``topic``/``pattern`` line."""
    Topics(prefix)  # validates the prefix
    out = []
    for line in acl.splitlines():
        parts = line.split()
        if parts and parts[0] in ("topic", "pattern"):
            levels = parts[-1].split("/")
            at = 2 if levels[0] == "$share" else 0
            if len(levels) > at and levels[at] == DEFAULT_PREFIX:
                levels[at] = prefix
                line = " ".join([*parts[:-1], "/".join(levels)])
        out.append(line)
    return "\n".join(out) + "\n"


def free_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:`port` (TIME_WAIT leftovers count as free, as for mosquitto)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def mqtt_connack(host: str, port: int, username: str, password: str, timeout: float = 2.0) -> int:
    """Connect with MQTT 3.1.1, return the CONNACK return code (0 = accepted) and disconnect.

    A raw probe keeps readiness checks free of client threads; raises OSError if nothing answers.
    """

    def field(text: str) -> bytes:
        data = text.encode()
        return struct.pack("!H", len(data)) + data

    body = field("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 10)  # v3.1.1, user+password+clean, 10 s
    body += field(f"fleetloop-probe-{secrets.token_hex(4)}") + field(username) + field(password)
    length, remaining = b"", len(body)
    while True:
        byte, remaining = remaining % 128, remaining // 128
        length += bytes([byte | (0x80 if remaining else 0)])
        if not remaining:
            break
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"\x10" + length + body)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            connack += chunk
        if connack[0] != 0x20:
            raise ConnectionError(f"unexpected reply to CONNECT: {connack!r}")
        if connack[3] == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so no last will and a quiet log
        return connack[3]


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


def write_private(path: Path, text: str) -> None:
    """Write `text` atomically to a file only the current user can read."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# --- `fleetloop broker …` ----------------------------------------------------------------------------------


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="A local development mosquitto running the "
                                     "project's config (mosquitto/) with generated credentials.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_p = commands.add_parser("run", help="run a dev broker in the foreground until Ctrl-C",
                                description="Run a dev broker on 127.0.0.1 in the foreground. The hub and "
                                "device passwords are written to credentials.json (mode 0600) in the work dir.")
    run_p.add_argument("--port", type=int, default=None, help="TCP port on 127.0.0.1 (default: a free one)")
    run_p.add_argument("--devices", default="dev-0,dev-1,dev-2",
                       help="comma-separated device ids to create users for (default: %(default)s)")
    run_p.add_argument("--workdir", default=None, help="directory for config, credentials, persistence and "
                       "log; reused (same passwords, same sessions) across runs (default: a temporary dir)")
    run_p.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    """`fleetloop broker run`: start, report where the credentials are, and stop cleanly on Ctrl-C."""
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    broker = DevBroker(args.workdir, port=args.port, devices=devices, prefix=args.prefix)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        broker.start()
        log.info("dev broker listening on %s (prefix %r, %d devices, pid %s)", broker.url, broker.prefix,
                 len(broker.devices), broker.pid)
        log.info("credentials for %r and the devices: %s", HUB_USER, broker.credentials_path)
        log.info("log: %s; press Ctrl-C to stop", broker.log_path)
        code = None
        while code is None:
            code = broker.wait(0.5)
        if code == 0:
            log.info("mosquitto was stopped from outside")
            return 0
        log.error("mosquitto exited unexpectedly (code %s); log tail:\n%s", code, broker.log_tail())
        return 1
    except KeyboardInterrupt:
        log.info("stopping the dev broker")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.workdir:
            broker.stop()
        else:
            broker.close()

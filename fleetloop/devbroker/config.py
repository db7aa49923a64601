"""The dev broker's config: finding mosquitto and the project's ``mosquitto/`` dir, rendering conf and ACL.

`render_config` rewrites the real mosquitto.conf for a loopback listener whose files all live in a work dir;
`render_tls_config` rewrites it for a deployment (docker compose): the one listener on TLS, the rest as written;
`render_acl` substitutes the topic prefix. All refuse to guess when the source config is not as expected.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from shared.errors import ConfigError
from shared.topics import DEFAULT_PREFIX, Topics

HOST = "127.0.0.1"
HUB_USER = "hub"  # the ACL grants this username the whole prefix (mosquitto/acl, `user hub`)
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


def find_config_dir() -> Path:
    """The broker config: ``FLEETLOOP_MOSQUITTO_DIR``, else the repository's ``mosquitto/`` directory."""
    env = os.environ.get("FLEETLOOP_MOSQUITTO_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "mosquitto"
    if not (path / "mosquitto.conf").is_file() or not (path / "acl").is_file():
        raise ConfigError(f"no mosquitto.conf and acl in {path}: set FLEETLOOP_MOSQUITTO_DIR to the "
                          "directory holding fleetloop's broker config")
    return path


def _rewrite(conf: str, rewrite: Callable[[str, str], list[str]], who: str) -> list[str]:
    """Each line of `conf` through ``rewrite(key, line)`` (key "" for blanks and comments; [] drops the line),
    refusing a config with several listeners or without a line every rendering needs."""
    out: list[str] = []
    seen: set[str] = set()
    for line in conf.splitlines():
        key = line.split(None, 1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if key == "listener" and key in seen:
            raise ConfigError(f"mosquitto.conf has several listeners; {who} renders exactly one")
        lines = rewrite(key, line)
        if lines:
            seen.add(key)
        out += lines
    missing = [k for k in _REQUIRED_KEYS if k not in seen]
    if missing:
        raise ConfigError(f"mosquitto.conf has no {', '.join(missing)} line: {who} refuses to guess")
    return out


def render_config(conf: str, *, port: int, workdir: Path, run_as: str | None = None) -> str:
    """Rewrite the real mosquitto.conf for a loopback dev broker whose files all live in `workdir`.

    `run_as` keeps a root-started mosquitto from switching to the `mosquitto` user, which could not
    read a private work directory.
    """
    replaced = {"listener": f"listener {port} {HOST}", "password_file": f"password_file {workdir / 'passwd'}",
                "acl_file": f"acl_file {workdir / 'acl'}",
                "persistence_location": f"persistence_location {workdir / 'data'}"}

    def rewrite(key: str, line: str) -> list[str]:
        if key in ("log_dest", "user", "pid_file") or key in _TLS_KEYS:
            return []
        return [replaced.get(key, line)]

    out = [f"# Rendered by fleetloop.devbroker for 127.0.0.1:{port}; edit mosquitto/mosquitto.conf.",
           *_rewrite(conf, rewrite, "the dev broker"), f"log_dest file {workdir / 'mosquitto.log'}"]
    if run_as:
        out.append(f"user {run_as}")
    return "\n".join(out) + "\n"


def render_tls_config(conf: str, *, port: int, cafile: str, certfile: str, keyfile: str) -> str:
    """The real mosquitto.conf with its one listener on `port` over TLS (these files), everything else as written.

    Any TLS option already in `conf` is dropped, so the listener uses exactly these files.
    """
    listener = [f"listener {port}", f"cafile {cafile}", f"certfile {certfile}", f"keyfile {keyfile}"]

    def rewrite(key: str, line: str) -> list[str]:
        return listener if key == "listener" else [] if key in _TLS_KEYS else [line]

    out = [f"# Rendered by `fleetloop provision init` (TLS on {port}); edit mosquitto/mosquitto.conf instead.",
           *_rewrite(conf, rewrite, "the TLS renderer")]
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

"""Broker credentials: random passwords, mosquitto 2.x password-file hashes, files only the owner can read.

Shared with `fleetloop.provision`, which writes the same files for docker compose. Stdlib only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from shared.errors import ConfigError

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


def write_private(path: Path, text: str) -> None:
    """Write `text` atomically to a file only the current user can read."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)

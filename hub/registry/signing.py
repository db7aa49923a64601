"""The hub's model signing key: created once (dev mode only), kept with 0600 permissions, signs every version.

``sign_version(dir)`` writes ``manifest.sig``: base64 text of the detached Ed25519 signature over the
exact bytes of ``manifest.json`` (format in shared/signing.py). Agents pin the public key (PEM, or the
base64 text from ``public_key_text()``) in ``model_public_key`` and refuse any version that does not verify.

Outside dev mode the hub never invents a key: a missing key file is a ConfigError naming the file, so a
fleet cannot silently start trusting a new key. ``python -m hub.registry.signing keygen PATH`` creates one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infra.files import fsync_path
from infra.versions import read_version
from shared.errors import ConfigError, FleetloopError, ModelError
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE
from shared.messages import Assign
from shared.signing import (
    Ed25519Verifier,
    generate_private_key,
    key_id,
    private_key_from_pem,
    private_key_to_pem,
    public_key_to_pem,
    public_key_to_text,
    sign_assignment,
    sign_manifest,
)

log = logging.getLogger(__name__)

DEFAULT_KEY_FILE = Path("keys") / "model-signing.pem"  # relative to the hub data dir
PUBLIC_SUFFIX = ".pub"


def default_key_path(data_dir: Path) -> Path:
    """Where the hub keeps its signing key unless configured otherwise."""
    return data_dir / DEFAULT_KEY_FILE


class SigningKey:
    """The hub's Ed25519 private key and what it signs."""

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private_key
        self.path = path
        self.public_key: Ed25519PublicKey = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new key in memory only (tests, tools)."""
        return cls(generate_private_key())

    @classmethod
    def create(cls, path: Path) -> SigningKey:
        """Write a new key to `path` (mode 0600, never overwriting) and its public key to ``path.pub``."""
        key = generate_private_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_new(path, private_key_to_pem(key), 0o600)
        signing_key = cls(key, path)
        signing_key.export_public_key(path.with_name(path.name + PUBLIC_SUFFIX))
        log.warning("created model signing key %s (key id %s); pin its public key on every agent",
                    path, signing_key.key_id)
        return signing_key

    @classmethod
    def load(cls, path: Path, *, dev_mode: bool, setting: str = "signing_key_file") -> SigningKey:
        """The key in `path`; in dev mode it is created on first use, otherwise a missing key is a ConfigError.

        Outside dev mode a key file that group or others may read is refused too.
        """
        if not path.exists():
            if not dev_mode:
                raise ConfigError(
                    f"no model signing key at {path}: set {setting} to the hub's Ed25519 key file, or create one "
                    f"with `python -m hub.registry.signing keygen {path}` and pin its public key on the agents "
                    "(only dev_mode=true creates a key by itself)"
                )
            try:
                return cls.create(path)
            except FileExistsError:
                pass  # another hub process created it first: use that one
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the model signing key {path} ({setting}): {exc.strerror}") from None
        if mode & 0o077:
            if not dev_mode:
                raise ConfigError(f"the model signing key {path} is readable by others (mode {mode:o}): "
                                  f"run `chmod 600 {path}`")
            log.warning("model signing key %s has mode %o; it should be 600", path, mode)
        return cls(private_key_from_pem(data, source=f"{setting} {path}"), path)

    # -- public key ----------------------------------------------------------------------------------------
    def public_key_text(self) -> str:
        """Base64 of the raw public key: the value for an agent's ``model_public_key``."""
        return public_key_to_text(self.public_key)

    def public_key_pem(self) -> bytes:
        return public_key_to_pem(self.public_key)

    def export_public_key(self, path: Path) -> Path:
        """Write the public key as PEM (world-readable; it is not a secret), replacing an older copy."""
        _write_atomic(path, self.public_key_pem(), 0o644)
        return path

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.public_key)

    # -- signing -------------------------------------------------------------------------------------------
    def sign(self, manifest_bytes: bytes) -> str:
        """Base64 signature of exactly `manifest_bytes`."""
        return sign_manifest(self._private, manifest_bytes)

    def sign_assignment(self, assign: Assign) -> Assign:
        """`assign` with the hub's approval (`shared.signing.assignment_bytes`): for one device, counter, expiry."""
        return sign_assignment(self._private, assign)

    def sign_version(self, version_dir: Path) -> Path:
        """Check a version directory (valid manifest, model sha256) and write its ``manifest.sig``.

        Returns the signature file. Raises ModelLoadError / ModelIntegrityError for a version that should
        never be signed. Re-signing (e.g. after a key rotation) replaces the old signature atomically.
        """
        try:
            manifest, _ = read_version(version_dir)  # a valid manifest whose model matches its sha256
        except ModelError as exc:
            raise type(exc)(f"refusing to sign {version_dir}: {exc}") from None
        manifest_bytes = (version_dir / MANIFEST_FILE).read_bytes()
        target = version_dir / SIGNATURE_FILE
        _write_atomic(target, (self.sign(manifest_bytes) + "\n").encode(), 0o644)
        log.info("signed model %s with key %s", manifest.version, self.key_id)
        return target


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` and `data`, all or nothing; FileExistsError if it exists."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.link(tmp, path)  # fails if `path` exists: never replaces a key
        fsync_path(path.parent)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    """``python -m hub.registry.signing keygen|pubkey|sign``: manage the key by hand (ops, CI, air-gapped sites)."""
    parser = argparse.ArgumentParser(prog="python -m hub.registry.signing", description="The hub's model signing key.")
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="create a new key file (0600) and KEY.pub; never overwrites")
    keygen.add_argument("key", type=Path)
    pubkey = sub.add_parser("pubkey", help="print the public key as base64 (for model_public_key)")
    pubkey.add_argument("key", type=Path)
    sign = sub.add_parser("sign", help="write manifest.sig into model version directories")
    sign.add_argument("key", type=Path)
    sign.add_argument("version_dirs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            try:
                key = SigningKey.create(args.key)
            except FileExistsError:
                raise ConfigError(f"{args.key} exists; keys are never overwritten") from None
        else:
            key = SigningKey.load(args.key, dev_mode=False, setting="KEY")
        if args.command == "sign":
            for version_dir in args.version_dirs:
                print(key.sign_version(version_dir))
        else:
            print(key.public_key_text())
    except FleetloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Model signatures (Ed25519): the format the hub signs with and agents verify. Pure functions, no I/O.

What is signed is the exact bytes of a version's ``manifest.json``; the manifest carries the sha256 of
``model.onnx``, so one signature covers the whole version. A signature travels as base64 text of the
64 raw Ed25519 bytes: in ``manifest.sig`` (one line, trailing newline allowed) and in ``Assign.signature``.
A public key is pinned on agents as base64 of its 32 raw bytes, or as PEM (SubjectPublicKeyInfo).

A manifest signature says "made by the hub"; it does not say "approved for the fleet". The hub's approval is the
signature over an assignment (``Assign.approval``): the canonical bytes of `assignment_bytes` (device, version,
mode, sha256, url, issued time, expiry, per-device counter, rollback flag, rollout), so an assignment cannot be
moved to another device, another version or another time, and a replayed old one is recognised by its counter.

Needs ``cryptography`` (in the agent and hub extras; the base install does not import this module).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import ConfigError, ModelIntegrityError
from shared.messages import Assign
from shared.wire import replace

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (protect the file with its permissions)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def private_key_from_pem(data: bytes, *, source: str = "the private key") -> Ed25519PrivateKey:
    """Parse a PKCS#8 PEM Ed25519 private key; ConfigError naming `source` if it is not one."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source} is a {type(key).__name__}, not an Ed25519 key")
    return key


def public_key_to_text(key: Ed25519PublicKey) -> str:
    """Base64 of the 32 raw bytes: short enough for an environment variable."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_to_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_from_text(text: str | bytes, *, source: str = "the public key") -> Ed25519PublicKey:
    """Parse a pinned public key given as PEM or as base64 of its 32 raw bytes; ConfigError if neither."""
    data = text.encode() if isinstance(text, str) else text
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source} is not a valid PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{source} is a {type(key).__name__}, not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ConfigError(f"{source} is neither PEM nor base64 of {PUBLIC_KEY_BYTES} raw Ed25519 key bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key for logs (first 16 hex digits of sha256 of the raw bytes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_manifest(key: Ed25519PrivateKey, manifest_bytes: bytes) -> str:
    """The detached signature of `manifest_bytes` as base64 text (what ``manifest.sig`` holds)."""
    return base64.b64encode(key.sign(manifest_bytes)).decode("ascii")


def decode_signature(signature: bytes | str) -> bytes:
    """The 64 raw bytes of a base64 signature; ModelIntegrityError if it is not one."""
    data = signature.encode() if isinstance(signature, str) else signature
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ModelIntegrityError("the signature is not base64") from None
    if len(raw) != SIGNATURE_BYTES:
        raise ModelIntegrityError(f"the signature has {len(raw)} bytes, an Ed25519 one has {SIGNATURE_BYTES}")
    return raw


def verify_manifest(key: Ed25519PublicKey, manifest_bytes: bytes, signature: bytes | str | None) -> None:
    """Raise ModelIntegrityError unless `signature` is `key`'s signature of exactly `manifest_bytes`."""
    if signature is None or not signature.strip():
        raise ModelIntegrityError("the model is not signed and a signing key is pinned")
    try:
        key.verify(decode_signature(signature), manifest_bytes)
    except InvalidSignature:
        message = f"bad signature: the manifest is not signed by the pinned key {key_id(key)}"
        raise ModelIntegrityError(message) from None


ASSIGNMENT_CONTEXT = b"fleetloop.assignment.v1\n"  # domain separation: never valid as a manifest signature
SIGNED_ASSIGNMENT_FIELDS = ("device_id", "version", "mode", "sha256", "url", "ts", "expires", "counter", "rollback",
                            "rollout_id")


def assignment_bytes(assign: Assign) -> bytes:
    """The exact bytes the hub signs for an assignment: a context line, then canonical JSON of its signed fields."""
    fields = {name: getattr(assign, name) for name in SIGNED_ASSIGNMENT_FIELDS}
    # times are floats on the wire: an int given to the constructor is signed as the float the device decodes
    fields["ts"] = float(assign.ts)
    fields["expires"] = None if assign.expires is None else float(assign.expires)
    return ASSIGNMENT_CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sign_assignment(key: Ed25519PrivateKey, assign: Assign) -> Assign:
    """`assign` with its `approval`: the base64 signature of `assignment_bytes`. Needs device, expiry and counter."""
    if assign.device_id is None or assign.expires is None or assign.counter is None:
        raise ModelIntegrityError("an assignment is signed for one device, with an expiry and a counter")
    return replace(assign, approval=base64.b64encode(key.sign(assignment_bytes(assign))).decode())


def verify_assignment(key: Ed25519PublicKey, assign: Assign) -> None:
    """Raise ModelIntegrityError unless `assign.approval` is `key`'s signature of its `assignment_bytes`."""
    if not assign.approval or assign.device_id is None or assign.expires is None or assign.counter is None:
        raise ModelIntegrityError("the assignment is not signed by the hub (no approval, device, expiry or counter)")
    try:
        key.verify(decode_signature(assign.approval), assignment_bytes(assign))
    except InvalidSignature:
        raise ModelIntegrityError(f"bad assignment signature: not signed by the pinned key {key_id(key)}") from None


class Ed25519Verifier:
    """A `ManifestVerifier` (infra.versions) that accepts only manifests signed by one pinned key."""

    def __init__(self, public_key: Ed25519PublicKey | str | bytes) -> None:
        self.public_key = (
            public_key if isinstance(public_key, Ed25519PublicKey) else public_key_from_text(public_key)
        )
        self.key_id = key_id(self.public_key)

    def verify(self, manifest_bytes: bytes, signature: bytes | None) -> None:
        verify_manifest(self.public_key, manifest_bytes, signature)

    def __repr__(self) -> str:
        return f"Ed25519Verifier(key_id={self.key_id!r})"

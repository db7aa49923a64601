"""Reading one model version directory: ``model.onnx`` + ``manifest.json`` (+ ``manifest.sig``), verified.

The one reader of a version directory: the agent's model store, the recipe library and the hub's signer all
check a version the same way (signature if a verifier is given, a valid manifest, the ONNX file's sha256).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shared.errors import ModelIntegrityError, ModelLoadError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, ModelManifest, load_manifest, sha256_bytes


class ManifestVerifier(Protocol):
    """Checks a manifest's signature; raises ModelIntegrityError when it does not verify."""

    def verify(self, manifest_bytes: bytes, signature: bytes | None) -> None: ...


def read_version(directory: Path, verifier: ManifestVerifier | None = None) -> tuple[ModelManifest, bytes]:
    """Read a version directory and check it: signature (if a verifier is given), manifest, sha256."""
    manifest_path = directory / MANIFEST_FILE
    model_path = directory / MODEL_FILE
    if not manifest_path.is_file() or not model_path.is_file():
        raise ModelLoadError(f"{directory} is not a model version (needs {MODEL_FILE} and {MANIFEST_FILE})")
    manifest_bytes = manifest_path.read_bytes()
    if verifier is not None:
        sig_path = directory / SIGNATURE_FILE
        verifier.verify(manifest_bytes, sig_path.read_bytes() if sig_path.is_file() else None)
    try:
        manifest = load_manifest(manifest_bytes)
    except ValueError as exc:  # msgspec's ValidationError and DecodeError name the first bad field
        raise ModelLoadError(f"{manifest_path} is not a valid manifest: {exc}") from None
    onnx_bytes = model_path.read_bytes()
    actual = sha256_bytes(onnx_bytes)
    if actual != manifest.onnx_sha256:
        raise ModelIntegrityError(
            f"model {manifest.version}: sha256 of {MODEL_FILE} is {actual}, manifest says {manifest.onnx_sha256}"
        )
    return manifest, onnx_bytes

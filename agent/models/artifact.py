"""Checking a fetched artifact against its assignment: version, sha256 and signature must all agree."""

from __future__ import annotations

from pathlib import Path

from infra.versions import ManifestVerifier
from shared.errors import ModelIntegrityError, ModelLoadError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, load_manifest, sha256_bytes
from shared.messages import Assign


def check_artifact(version_dir: Path, assign: Assign, verifier: ManifestVerifier | None) -> None:
    """The fetched version is the one assigned: version, sha256 in the assignment, manifest and file agree.

    The assignment's signature is verified over the manifest (when a key is pinned) and, if the artifact
    has no ``manifest.sig``, written there so the store keeps it; the store then verifies ``manifest.sig``.
    """
    try:
        manifest_bytes = (version_dir / MANIFEST_FILE).read_bytes()
        onnx_bytes = (version_dir / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"the artifact is incomplete: {exc}") from None
    try:
        manifest = load_manifest(manifest_bytes)
    except ValueError as exc:
        raise ModelLoadError(f"the artifact's manifest is invalid: {exc}") from None
    if manifest.version != assign.version:
        raise ModelIntegrityError(f"assigned {assign.version} but the artifact's manifest is {manifest.version}")
    if manifest.onnx_sha256 != assign.sha256:
        raise ModelIntegrityError(f"sha256 mismatch: the assignment says {assign.sha256}, "
                                  f"the manifest says {manifest.onnx_sha256}")
    actual = sha256_bytes(onnx_bytes)
    if actual != assign.sha256:
        raise ModelIntegrityError(f"sha256 mismatch: {MODEL_FILE} is {actual}, the assignment says {assign.sha256}")
    if assign.signature.strip():
        if verifier is not None:
            verifier.verify(manifest_bytes, assign.signature.encode())
        signature_path = version_dir / SIGNATURE_FILE
        if not signature_path.exists():
            signature_path.write_text(assign.signature.strip() + "\n")

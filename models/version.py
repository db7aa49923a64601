"""A model version on disk: a directory with ``model.onnx`` and ``manifest.json``, written atomically.

Versions are immutable: writing never replaces an existing version, and readers verify the sha256.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np

from infra.files import fsync_path, write_synced
from models.errors import VersionExistsError
from models.onnx_export import INPUT_NAME, OUTPUT_NAME
from models.training import ParamValue
from shared.errors import ModelIntegrityError, ModelLoadError
from shared.features import WindowSpec, feature_names
from shared.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    Calibration,
    ModelManifest,
    Provenance,
    Reference,
    SampleWeighting,
    TrainingInfo,
    dump_manifest,
    load_manifest,
    sha256_bytes,
)
from shared.regimes import RegimeStats

_LIBRARIES = ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime")


def data_fingerprint(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> str:
    """sha256 over the training data exactly as fitted: X as float32, y as int64, weights as float64."""
    digest = hashlib.sha256()
    for name, array in (
        ("X", np.ascontiguousarray(X, dtype=np.float32)),
        ("y", np.ascontiguousarray(y, dtype=np.int64)),
        ("w", None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float64)),
    ):
        if array is None:
            digest.update(f"{name}:none;".encode())
            continue
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made (and must be able to reproduce) a model."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def build_manifest(
    *,
    version: str,
    onnx_bytes: bytes,
    family: str,
    window: WindowSpec,
    threshold: float,
    reference: Reference,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    data_kind: Literal["simulated", "real", "mixed"],
    created_by: str,
    reason: str,
    metrics: Mapping[str, float],
    cohort_metrics: Mapping[str, Mapping[str, float]] | None = None,
    sample_weight: np.ndarray | None = None,
    parent_version: str | None = None,
    trigger_id: str | None = None,
    label_set_version: str | None = None,
    sources: Sequence[str] = (),
    params: Mapping[str, ParamValue] | None = None,
    created: datetime | None = None,
    weighting: SampleWeighting | None = None,
    calibration: Calibration | None = None,
    regimes: RegimeStats | None = None,
) -> ModelManifest:
    """Every field of the manifest of a new version; `created` defaults to now (UTC).

    Raises ModelLoadError when the pieces do not fit together (e.g. X's width is not the window's).
    """
    X = np.asarray(X)
    y = np.asarray(y)
    names = feature_names(window.sensors, window.feature_set_version)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ModelLoadError(f"X has shape {X.shape}; the window has {len(names)} features")
    when = (created or datetime.now(UTC)).astimezone(UTC)
    try:
        manifest = ModelManifest(
            version=version,
            parent_version=parent_version,
            created=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
            model_family=family,
            window=window,
            feature_names=names,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            threshold=threshold,
            reference=reference,
            training=TrainingInfo(
                data_fingerprint=data_fingerprint(X, y, sample_weight),
                n_samples=int(y.shape[0]),
                n_positive=int(np.sum(y == 1)),
                seed=seed,
                data_kind=data_kind,
                label_set_version=label_set_version,
                sources=list(sources),
                params=dict(params or {}),
                weighting=weighting,
            ),
            provenance=Provenance(created_by=created_by, reason=reason, trigger_id=trigger_id),
            library_versions=library_versions(),
            metrics=dict(metrics),
            cohort_metrics={k: dict(v) for k, v in (cohort_metrics or {}).items()},
            calibration=calibration,
            regimes=regimes,
            onnx_sha256=sha256_bytes(onnx_bytes),
        )
        return load_manifest(dump_manifest(manifest))  # decoding checks every field's type and constraint
    except ValueError as exc:
        raise ModelLoadError(f"the manifest would be invalid: {exc}") from exc


def check_new_version_dir(out_dir: Path | str) -> None:
    """Raise VersionExistsError unless `out_dir` is absent or an empty directory (checked before long work)."""
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise VersionExistsError(f"{target} already exists; model versions are never overwritten")


def write_version(out_dir: Path | str, onnx_bytes: bytes, manifest: ModelManifest) -> Path:
    """Write ``model.onnx`` and ``manifest.json`` into the new directory `out_dir`, all or nothing.

    Files are written and fsynced in a temporary sibling directory that is then renamed into place.
    Raises VersionExistsError if `out_dir` exists and is not empty, ModelIntegrityError if the bytes do
    not match ``manifest.onnx_sha256``.
    """
    target = Path(out_dir)
    if sha256_bytes(onnx_bytes) != manifest.onnx_sha256:
        raise ModelIntegrityError("the ONNX bytes do not match the manifest's onnx_sha256")
    check_new_version_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        write_synced(tmp / MODEL_FILE, onnx_bytes)
        write_synced(tmp / MANIFEST_FILE, dump_manifest(manifest, indent=2) + b"\n")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)  # replaces only an empty directory, atomically
        except OSError as exc:
            raise VersionExistsError(f"{target} appeared while writing; not overwritten") from exc
        fsync_path(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_version(version_dir: Path | str) -> tuple[ModelManifest, bytes]:
    """The manifest and ONNX bytes of a version directory, verified against the manifest's sha256.

    `infra.versions.read_version` is the one implementation: the agent verifies what it serves the same way.
    """
    from infra.versions import read_version as verified_read

    return verified_read(Path(version_dir))

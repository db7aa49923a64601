"""The candidates that must never reach the fleet: a valid ONNX model that gives NaN, copied as a new version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fleetloop.story.faults import nan_candidate, nan_onnx
from models.onnx_export import onnx_session
from models.version import read_version
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE


def test_the_nan_model_loads_and_scores_nan() -> None:
    session = onnx_session(nan_onnx(36))
    (proba,) = session.run(None, {"X": np.ones((3, 36), np.float32)})
    assert proba.shape == (3, 2) and np.isnan(proba).all()


def test_a_nan_candidate_is_a_verifiable_version_of_its_own(initial_model_dir: Path, tmp_path: Path) -> None:
    parent = tmp_path / "v2"
    import shutil

    shutil.copytree(initial_model_dir, parent)
    (parent / SIGNATURE_FILE).write_text("old signature")
    out = nan_candidate(parent, tmp_path / "nan-1", version="nan-1", parent_version="v2")
    manifest, onnx = read_version(out)  # sha256 verified
    assert (manifest.version, manifest.parent_version) == ("nan-1", "v2")
    assert onnx == nan_onnx(len(manifest.feature_names)) and not (out / SIGNATURE_FILE).exists()
    before = json.loads((parent / MANIFEST_FILE).read_text())
    assert manifest.threshold == before["threshold"] and manifest.feature_names == before["feature_names"]

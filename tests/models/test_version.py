"""Model versions on disk: manifest contents, atomic immutable writes, verified reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from models.calibration import fit_calibration
from models.errors import VersionExistsError
from models.onnx_export import positive_scores
from models.reference import reference_from_features
from models.training import classification_metrics
from models.version import build_manifest, data_fingerprint, read_version, write_version
from shared.errors import ModelIntegrityError, ModelLoadError
from shared.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    Calibration,
    ModelManifest,
    SampleWeighting,
    dump_manifest,
    load_manifest,
    sha256_bytes,
)
from tests.models.conftest import SPEC, SmallModel


def _manifest(model: SmallModel, **overrides: object) -> ModelManifest:
    train = model.train
    scores = positive_scores(model.estimator, train.X)
    kwargs: dict[str, object] = {
        "version": "v7",
        "onnx_bytes": model.onnx_bytes,
        "family": "gbc",
        "window": SPEC,
        "threshold": model.threshold,
        "reference": reference_from_features(train.X, scores),
        "X": train.X,
        "y": train.y,
        "seed": 11,
        "data_kind": "simulated",
        "created_by": "test",
        "reason": "testing",
        "metrics": classification_metrics(model.hold.y, positive_scores(model.estimator, model.hold.X), 0.5),
        "cohort_metrics": {"site-a/pump": {"f1": 0.5}},
        "parent_version": "v6",
        "created": datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
    }
    kwargs.update(overrides)
    return build_manifest(**kwargs)  # type: ignore[arg-type]


def test_build_manifest_fills_every_field(small_model: SmallModel) -> None:
    m = _manifest(small_model)
    assert m.created == "2024-05-01T12:00:00Z"
    assert (m.version, m.parent_version, m.model_family) == ("v7", "v6", "gbc")
    assert (m.input_name, m.output_name) == ("X", "probabilities")
    assert m.onnx_sha256 == sha256_bytes(small_model.onnx_bytes)
    assert m.training.n_samples == len(small_model.train)
    assert m.training.n_positive == int(small_model.train.y.sum())
    assert m.training.data_fingerprint == data_fingerprint(small_model.train.X, small_model.train.y)
    assert {"numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"} <= set(m.library_versions)
    assert "absent" not in m.library_versions.values()
    assert m.provenance.created_by == "test"
    load_manifest(dump_manifest(m))


def test_manifests_written_before_weighting_and_calibration_still_load(small_model: SmallModel) -> None:
    """Older manifests have neither field; they load with None. A new one carries both, fitted on held-out rows."""
    hold = small_model.hold
    calibration = fit_calibration(hold.y, positive_scores(small_model.estimator, hold.X), "eval")
    weighting = SampleWeighting(method="field_share", base_row_weight=1.0, field_row_weight=2.0, field_min_share=0.5,
                                base_scale=0.25, base_total=100.0, field_total=100.0, field_share=0.5)
    new = _manifest(small_model, calibration=calibration, weighting=weighting)
    assert new.calibration == calibration and new.training.weighting == weighting and calibration is not None
    assert calibration.n == len(hold) and calibration.y == sorted(calibration.y)
    old = json.loads(dump_manifest(new))
    del old["calibration"], old["training"]["weighting"]
    loaded = load_manifest(json.dumps(old))
    assert loaded.calibration is None and loaded.training.weighting is None
    assert load_manifest(old) == loaded  # a stored row (plain data) too
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration(x=[0.5, 0.2], y=[0.1, 0.9], fitted_on="eval", n=10, n_positive=5)


def test_data_fingerprint_sees_every_input() -> None:
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.array([0, 1, 0])
    base = data_fingerprint(X, y)
    assert base == data_fingerprint(X.astype(np.float64), y.astype(np.int8))  # same data as fitted
    assert base != data_fingerprint(X + 1, y)
    assert base != data_fingerprint(X, 1 - y)
    assert base != data_fingerprint(X, y, np.ones(3))
    assert data_fingerprint(X, y, np.ones(3)) != data_fingerprint(X, y, np.full(3, 2.0))


def test_manifest_refuses_features_that_do_not_fit_the_window(small_model: SmallModel) -> None:
    with pytest.raises(ModelLoadError, match="features"):
        _manifest(small_model, X=small_model.train.X[:, :5])
    with pytest.raises(ModelLoadError, match="invalid"):
        _manifest(small_model, version="bad version!")


def test_write_then_read_round_trips(small_model: SmallModel, tmp_path: Path) -> None:
    manifest = _manifest(small_model)
    out = write_version(tmp_path / "store" / "v7", small_model.onnx_bytes, manifest)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_FILE, MODEL_FILE]
    assert sorted(p.name for p in out.parent.iterdir()) == ["v7"]  # no temp dir left behind
    read_manifest, onnx_bytes = read_version(out)
    assert read_manifest == manifest and onnx_bytes == small_model.onnx_bytes


def test_write_into_an_empty_existing_dir(small_model: SmallModel, tmp_path: Path) -> None:
    (tmp_path / "v7").mkdir()
    write_version(tmp_path / "v7", small_model.onnx_bytes, _manifest(small_model))
    assert (tmp_path / "v7" / MODEL_FILE).read_bytes() == small_model.onnx_bytes


def test_versions_are_never_overwritten(small_model: SmallModel, tmp_path: Path) -> None:
    manifest = _manifest(small_model)
    write_version(tmp_path / "v7", small_model.onnx_bytes, manifest)
    before = (tmp_path / "v7" / MANIFEST_FILE).read_bytes()
    with pytest.raises(VersionExistsError, match="never overwritten"):
        write_version(tmp_path / "v7", small_model.onnx_bytes, manifest)
    assert (tmp_path / "v7" / MANIFEST_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v7"]


def test_write_refuses_bytes_that_do_not_match_the_manifest(small_model: SmallModel, tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError):
        write_version(tmp_path / "v7", small_model.onnx_bytes + b"x", _manifest(small_model))
    assert not any(tmp_path.iterdir())


def test_read_refuses_a_tampered_model(small_model: SmallModel, tmp_path: Path) -> None:
    out = write_version(tmp_path / "v7", small_model.onnx_bytes, _manifest(small_model))
    (out / MODEL_FILE).write_bytes(small_model.onnx_bytes[:-1])
    with pytest.raises(ModelIntegrityError):
        read_version(out)
    with pytest.raises(ModelLoadError, match="not a model version"):
        read_version(tmp_path / "missing")
    (out / MANIFEST_FILE).write_text("{}")
    with pytest.raises(ModelLoadError, match="not a valid manifest"):
        read_version(out)

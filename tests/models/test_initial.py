"""The initial model recipe: a valid, verified, reproducible version that predicts simulated failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import models.initial
from models.errors import ParityError, VersionExistsError
from models.initial import build_initial
from models.onnx_export import onnx_scores, onnx_session, to_onnx_bytes
from models.training import Classifier, train_classifier
from shared.features import feature_names, histogram_counts
from shared.manifest import MANIFEST_FILE, MODEL_FILE, ModelManifest, load_manifest, sha256_bytes
from sim import Drift, SensorOffset, simulate_windows


def _build_small(out_dir: Path, seed: int = 7) -> ModelManifest:
    return build_initial(out_dir, seed=seed, n_machines=12, steps=1500)


def _manifest(version_dir: Path) -> ModelManifest:
    return load_manifest((version_dir / MANIFEST_FILE).read_bytes())


def test_the_initial_version_validates_and_matches_its_file(initial_model_dir: Path) -> None:
    manifest = _manifest(initial_model_dir)
    assert sha256_bytes((initial_model_dir / MODEL_FILE).read_bytes()) == manifest.onnx_sha256
    assert manifest.version == "v1" and manifest.parent_version is None
    assert manifest.provenance.created_by == "recipe:initial"
    assert manifest.training.data_kind == "simulated" and manifest.training.seed == 7
    assert manifest.feature_names == feature_names(manifest.window.sensors)
    assert (manifest.input_name, manifest.output_name) == ("X", "probabilities")
    assert manifest.created.endswith("Z")
    assert set(manifest.cohort_metrics) == {"site-a/fan", "site-a/pump", "site-b/compressor"}
    assert manifest.metrics["parity_label_flips"] == 0.0 and manifest.metrics["parity_max_abs_diff"] < 1e-4


def test_the_initial_model_predicts_failures(initial_model_dir: Path) -> None:
    m = _manifest(initial_model_dir).metrics
    assert m["roc_auc"] > 0.97
    assert m["f1"] > 0.7 and m["recall"] > 0.7
    assert m["false_alarm_rate"] < 0.06


def test_reference_histograms_count_the_training_rows(initial_model_dir: Path) -> None:
    manifest = _manifest(initial_model_dir)
    n = manifest.training.n_samples
    assert all(sum(h) == n for h in manifest.reference.histograms)
    assert sum(manifest.reference.score_histogram) == n
    assert len(manifest.reference.bin_edges) == len(manifest.feature_names)


def _psi(live: np.ndarray, ref: np.ndarray) -> float:
    p, q = np.clip(live, 1e-4, None), np.clip(ref, 1e-4, None)
    return float(np.sum((p - q) * np.log(p / q)))


def test_the_reference_tells_a_drifted_fleet_from_a_fresh_one(initial_model_dir: Path) -> None:
    manifest = _manifest(initial_model_dir)
    session = onnx_session((initial_model_dir / MODEL_FILE).read_bytes())
    pressure_mean = manifest.feature_names.index("pressure.mean")

    def psi_per_feature(drifts: list[Drift]) -> np.ndarray:
        ds = simulate_windows(30, 2000, seed=123, spec=manifest.window, horizon=100, drifts=drifts)
        scores = onnx_scores(session, ds.X)
        assert scores.min() >= 0.0 and scores.max() <= 1.0
        ref = manifest.reference
        return np.array(
            [
                _psi(histogram_counts(ds.X[:, j], np.asarray(edges)) / len(ds), np.asarray(counts) / sum(counts))
                for j, (edges, counts) in enumerate(zip(ref.bin_edges, ref.histograms, strict=True))
            ]
        )

    fresh = psi_per_feature([])
    drifted = psi_per_feature([SensorOffset(sensor="pressure", offset=0.5, start_t=0)])
    assert fresh.max() < 0.3  # unseen machines of the same fleet: no feature badly off
    assert drifted[pressure_mean] > 0.5


def test_same_seed_same_model_and_metrics(tmp_path: Path) -> None:
    a = _build_small(tmp_path / "a", seed=3)
    b = _build_small(tmp_path / "b", seed=3)
    c = _build_small(tmp_path / "c", seed=4)
    assert a.onnx_sha256 == b.onnx_sha256
    assert (tmp_path / "a" / MODEL_FILE).read_bytes() == (tmp_path / "b" / MODEL_FILE).read_bytes()
    assert a.metrics == b.metrics and a.cohort_metrics == b.cohort_metrics
    assert a.threshold == b.threshold and a.reference == b.reference and a.training == b.training
    assert c.onnx_sha256 != a.onnx_sha256 and c.training.data_fingerprint != a.training.data_fingerprint


def test_parity_failure_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def convert_another_model(estimator: Classifier, n_features: int) -> bytes:
        X = np.random.default_rng(0).normal(size=(200, n_features)).astype(np.float32)
        other = train_classifier(X, (X[:, 0] > 0).astype(int), seed=0, params={"n_estimators": 3})
        return to_onnx_bytes(other, n_features)

    monkeypatch.setattr(models.initial, "to_onnx_bytes", convert_another_model)
    with pytest.raises(ParityError):
        _build_small(tmp_path / "v1")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_version_is_refused_before_any_work(initial_model_dir: Path) -> None:
    before = (initial_model_dir / MANIFEST_FILE).read_bytes()
    with pytest.raises(VersionExistsError):
        build_initial(initial_model_dir, n_machines=1, steps=1)
    assert (initial_model_dir / MANIFEST_FILE).read_bytes() == before


def test_manifest_is_plain_json(initial_model_dir: Path) -> None:
    raw = json.loads((initial_model_dir / MANIFEST_FILE).read_text())
    assert raw["schema_version"] == 1 and raw["model_family"] == "gbc"
    assert raw["training"]["params"]["horizon"] == 100

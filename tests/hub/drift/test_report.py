import json

import numpy as np
import pytest

from hub.drift import DriftReport, Sketch, drift_report, fleet_reports, merge_sketches
from hub.drift.sketch import SketchShapeError

NAMES = ["temp.mean", "vib.rms", "current.max"]
REF = Sketch(
    feature_hist=np.array([[2500, 2500, 2500, 2500], [5000, 5000, 0, 0], [1000, 8000, 1000, 0]]),
    score_hist=np.array([9000, 900, 100]),
    windows=10_000,
    anomalies=100,
)


def sketch(
    probs: list[list[float]], n: int, seed: int, *, score: list[float] | None = None, anomalies: int = 0
) -> Sketch:
    """A seeded multinomial draw of n windows per feature from the given bin probabilities."""
    rng = np.random.default_rng(seed)
    width = REF.feature_hist.shape[1]
    hist = np.array([np.pad(rng.multinomial(n, p), (0, width - len(p))) for p in probs])
    scores = rng.multinomial(n, score if score is not None else [0.9, 0.09, 0.01])
    return Sketch(hist, scores, windows=n, anomalies=anomalies)


BIG_REF = Sketch(REF.feature_hist * 200, REF.score_hist * 200, windows=2_000_000, anomalies=20_000)
SAME = [[0.25, 0.25, 0.25, 0.25], [0.5, 0.5], [0.1, 0.8, 0.1]]
SHIFTED_TEMP = [[0.05, 0.15, 0.3, 0.5], [0.5, 0.5], [0.1, 0.8, 0.1]]


def test_same_distribution_is_no_drift() -> None:
    r = drift_report(REF, sketch(SAME, 5000, seed=1, anomalies=50), NAMES, scope="fleet")
    assert r.verdict == "no_drift"
    assert r.drifted_features == []
    assert r.reason.startswith("no drift: largest PSI 0.00")
    assert r.reason.endswith("below 0.2")
    assert r.score is not None and not r.score.drifted
    assert r.anomaly_rate is not None and not r.anomaly_rate.changed


def test_material_and_significant_shift_is_drift() -> None:
    r = drift_report(REF, sketch(SHIFTED_TEMP, 5000, seed=2, anomalies=50), NAMES, scope="fleet")
    assert r.verdict == "drift"
    assert r.drifted_features == ["temp.mean"]
    temp = r.features[0]
    assert temp.psi >= 0.2 and temp.band == "significant" and temp.p_adjusted <= 0.01
    assert r.reason == "drift in 1 of 3 features: temp.mean"


def test_tiny_sample_with_a_very_different_histogram_is_insufficient_data() -> None:
    cur = Sketch(np.array([[0, 0, 0, 50], [0, 0, 0, 50], [0, 0, 0, 50]]), np.array([0, 0, 50]), 50, 50)
    r = drift_report(REF, cur, NAMES, scope="device:pump-7", min_samples=200)
    assert r.verdict == "insufficient_data"
    assert r.reason == "insufficient data: 50 current windows, fewer than 200"
    assert all(f.psi > 1 for f in r.features)  # the effect looks huge, yet nothing fires
    assert r.drifted_features == []
    assert r.score is not None and not r.score.drifted
    assert r.anomaly_rate is not None and not r.anomaly_rate.changed


def test_small_reference_is_insufficient_data() -> None:
    small = Sketch(np.array([[1, 1, 1, 1]] * 3), np.array([3, 1, 0]), windows=4, anomalies=0)
    r = drift_report(small, sketch(SHIFTED_TEMP, 5000, seed=3), NAMES, scope="fleet")
    assert r.verdict == "insufficient_data"
    assert "4 reference windows" in r.reason


def test_effect_size_gates_significance_on_a_large_fleet() -> None:
    # Two million windows on each side: a PSI of ~0.002 is overwhelmingly significant, but immaterial.
    nudged = [[0.23, 0.25, 0.26, 0.26], [0.5, 0.5], [0.1, 0.8, 0.1]]
    r = drift_report(BIG_REF, sketch(nudged, 2_000_000, seed=4, anomalies=20_000), NAMES, scope="fleet")
    temp = r.features[0]
    assert temp.p_adjusted < 1e-12 and temp.psi < 0.01
    assert r.verdict == "no_drift"
    assert r.reason.endswith("1 feature(s) significant after BH but immaterial")


def test_significance_gates_a_large_psi_on_a_small_sample() -> None:
    ref = Sketch(np.array([[500, 500]]), np.array([1000]), windows=1000, anomalies=0)
    cur = Sketch(np.array([[9, 3]]), np.array([12]), windows=12, anomalies=0)
    r = drift_report(ref, cur, ["x"], scope="fleet", min_samples=10)
    assert r.features[0].psi == pytest.approx(0.25 * np.log(1.5) + 0.25 * np.log(2), rel=1e-12)
    assert r.features[0].p_adjusted > 0.01
    assert r.verdict == "no_drift"
    assert r.reason == "no drift: largest PSI 0.275 (x); 1 feature(s) at PSI ≥ 0.2 not confirmed"


def test_score_drift_and_anomaly_rate_change_are_reported() -> None:
    cur = sketch(SAME, 5000, seed=5, score=[0.6, 0.3, 0.1], anomalies=500)
    r = drift_report(REF, cur, NAMES, scope="cohort:north")
    assert r.verdict == "drift"
    assert r.drifted_features == []
    assert r.score is not None and r.score.drifted and r.score.band == "significant"
    assert r.anomaly_rate is not None and r.anomaly_rate.changed
    assert (r.anomaly_rate.rate_reference, r.anomaly_rate.rate_current) == (0.01, 0.1)
    assert r.reason.startswith("prediction scores shifted (PSI ")
    assert r.reason.endswith("; anomaly rate 1.00% → 10.00%")


def test_small_anomaly_rate_change_is_immaterial() -> None:
    # 1% → 1.2% over 200,000 windows is significant but Cohen's h is only 0.019.
    cur = sketch(SAME, 200_000, seed=6, anomalies=2400)
    r = drift_report(BIG_REF, cur, NAMES, scope="fleet")
    assert r.anomaly_rate is not None
    assert r.anomaly_rate.effect == pytest.approx(2 * (np.arcsin(0.012**0.5) - np.arcsin(0.1)), rel=1e-12)
    assert r.anomaly_rate.p_value < 1e-10 and not r.anomaly_rate.changed
    assert r.verdict == "no_drift"


def test_bare_reference_matrix_skips_score_and_rate() -> None:
    r = drift_report(REF.feature_hist, sketch(SHIFTED_TEMP, 5000, seed=7), NAMES, scope="fleet")
    assert (r.score, r.anomaly_rate, r.n_reference) == (None, None, 10_000)
    assert r.drifted_features == ["temp.mean"]


def test_ks_can_drive_the_decision() -> None:
    r = drift_report(REF, sketch(SHIFTED_TEMP, 5000, seed=8), NAMES, scope="fleet", test="ks")
    assert r.test == "ks"
    assert r.drifted_features == ["temp.mean"]
    assert r.features[0].p_adjusted <= 0.01


def test_to_dict_is_json_round_trippable() -> None:
    r = drift_report(REF, sketch(SHIFTED_TEMP, 5000, seed=9, anomalies=40), NAMES, scope="fleet")
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert data["verdict"] == "drift"
    assert data["drifted_features"] == ["temp.mean"]
    assert [f["name"] for f in data["features"]] == NAMES
    assert set(data["score"]) == {"psi", "band", "js_distance", "chi2_p_value", "drifted"}
    assert data["anomaly_rate"]["rate_reference"] == 0.01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_samples": 0}, "min_samples"),
        ({"alpha": 1.0}, "alpha"),
        ({"psi_threshold": 0.0}, "psi_threshold"),
        ({"test": "t"}, "test must be"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drift_report(REF, sketch(SAME, 500, seed=0), NAMES, scope="fleet", **kwargs)  # type: ignore[arg-type]


def test_shape_mismatches_are_clear() -> None:
    other = Sketch(np.zeros((3, 5), dtype=int), np.zeros(3, dtype=int), 0, 0)
    with pytest.raises(SketchShapeError, match=r"device:x: feature_hist shape \(3, 5\) differs"):
        drift_report(REF, other, NAMES, scope="device:x")
    with pytest.raises(ValueError, match="2 feature names for 3 features"):
        drift_report(REF, sketch(SAME, 500, seed=0), NAMES[:2], scope="fleet")
    with pytest.raises(SketchShapeError, match="device b"):
        fleet_reports(REF, {"a": sketch(SAME, 500, seed=0), "b": other}, {}, NAMES)


def test_fleet_reports_scopes_and_consistency_with_drift_report() -> None:
    devices = {
        "d3": sketch(SHIFTED_TEMP, 3000, seed=11, anomalies=30),
        "d1": sketch(SAME, 3000, seed=12, anomalies=30),
        "d2": sketch(SAME, 3000, seed=13, anomalies=30),
        "d4": sketch(SAME, 100, seed=14, anomalies=1),
    }
    cohorts = {"d1": "south", "d2": "south", "d3": "north", "ghost": "north"}
    reports = fleet_reports(REF, devices, cohorts, NAMES)
    # One drifting device of three is diluted fleet-wide (PSI < 0.2); its cohort and it alone drift.
    assert [(r.scope, r.verdict) for r in reports] == [
        ("fleet", "no_drift"),
        ("cohort:north", "drift"),
        ("cohort:south", "no_drift"),
        ("device:d1", "no_drift"),
        ("device:d2", "no_drift"),
        ("device:d3", "drift"),
        ("device:d4", "insufficient_data"),
    ]
    assert reports[0].n_current == 9100
    expected = {
        "fleet": merge_sketches(devices.values()),
        "cohort:north": devices["d3"],
        "cohort:south": devices["d1"].merge(devices["d2"]),
        "device:d4": devices["d4"],
    }
    by_scope = {r.scope: r for r in reports}
    for scope, merged in expected.items():
        assert by_scope[scope].to_dict() == drift_report(REF, merged, NAMES, scope=scope).to_dict()


def test_fleet_report_with_unknown_anomalies_skips_the_rate_only_where_unknown() -> None:
    devices = {
        "a": sketch(SAME, 500, seed=1, anomalies=5),
        "b": Sketch(REF.feature_hist // 20, REF.score_hist // 20, 500),
    }
    reports = {r.scope: r for r in fleet_reports(REF, devices, {"a": "x"})}
    assert reports["fleet"].anomaly_rate is None
    assert reports["cohort:x"].anomaly_rate is not None
    assert reports["device:b"].anomaly_rate is None
    assert [f.name for f in reports["fleet"].features] == ["f0", "f1", "f2"]


def _fleet(n_devices: int, n_features: int, seed: int) -> tuple[Sketch, dict[str, Sketch], dict[str, str]]:
    rng = np.random.default_rng(seed)
    n_bins = rng.integers(11, 22, size=n_features)  # 10–20 edges each
    width = int(n_bins.max())
    probs = [rng.dirichlet(np.full(b, 20.0)) for b in n_bins]

    def draw(n: int) -> np.ndarray:
        return np.array([np.pad(rng.multinomial(n, p), (0, width - len(p))) for p in probs])

    ref = Sketch(draw(200_000), rng.multinomial(200_000, np.full(10, 0.1)), 200_000, 2000)
    devices = {
        f"dev-{i:04d}": Sketch(draw(400), rng.multinomial(400, np.full(10, 0.1)), 400, int(rng.integers(0, 8)))
        for i in range(n_devices)
    }
    return ref, devices, {d: f"site-{i % 12}" for i, d in enumerate(devices)}


def test_fleet_of_a_thousand_devices() -> None:
    """Shape and verdicts at fleet scale; its speed is measured by bench/hub.py, not asserted here."""
    ref, devices, cohorts = _fleet(1000, 24, seed=5)
    reports = fleet_reports(ref, devices, cohorts)
    assert len(reports) == 1 + 12 + 1000
    assert all(isinstance(r, DriftReport) and len(r.features) == 24 for r in reports)
    assert reports[0].verdict == "no_drift"


def test_reference_without_scores_ignores_device_score_histograms() -> None:
    devices = {
        "a": Sketch(REF.feature_hist // 20, np.array([400, 100]), 500, 5),
        "b": Sketch(REF.feature_hist // 20, np.array([300, 100, 100]), 500, 5),
    }
    reports = fleet_reports(REF.feature_hist, devices, {})
    assert [r.score for r in reports] == [None, None, None]
    assert [r.verdict for r in reports] == ["no_drift"] * 3

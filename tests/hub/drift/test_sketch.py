import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.drift.sketch import Sketch, SketchShapeError, merge, merge_sketches, pad_counts
from shared.errors import ContractError
from shared.features import histogram_counts
from shared.manifest import Reference
from shared.messages import Stats
from tests.hub.drift.strategies import histogram_matrix

REFERENCE = Reference(
    bin_edges=[[0.0, 1.0], [10.0, 20.0, 30.0]],
    histograms=[[1, 8, 1], [2, 3, 3, 2]],
    score_bin_edges=[0.25, 0.5, 0.75],
    score_histogram=[4, 3, 2, 1],
)


def stats(feature_hist: list[list[int]], score_hist: list[int], windows: int = 10, anomalies: int = 1) -> Stats:
    return Stats(
        device_id="pump-7",
        ts=100.0,
        period_start=0.0,
        period_end=100.0,
        windows=windows,
        anomalies=anomalies,
        samples=0,
        bad_readings=0,
        bad_rows=0,
        inference_errors=0,
        nan_scores=0,
        feature_hist=feature_hist,
        score_hist=score_hist,
    )


def test_merge_sums_and_refuses_other_shapes() -> None:
    assert merge([np.ones((2, 3), dtype=int), 2 * np.ones((2, 3), dtype=int)]).tolist() == [[3, 3, 3]] * 2
    with pytest.raises(SketchShapeError, match=r"histogram 1 has shape \(2, 4\), histogram 0 has \(2, 3\)"):
        merge([np.ones((2, 3), dtype=int), np.ones((2, 4), dtype=int)])
    with pytest.raises(ValueError, match="nothing to merge"):
        merge([])


def test_shape_error_is_a_contract_error_and_a_value_error() -> None:
    assert issubclass(SketchShapeError, ContractError)
    assert issubclass(SketchShapeError, ValueError)


def test_merge_sketches() -> None:
    a = Sketch(np.array([[1, 2]]), np.array([3]), windows=3, anomalies=1)
    b = Sketch(np.array([[4, 0]]), np.array([4]), windows=4, anomalies=0)
    unknown = Sketch(np.array([[0, 1]]), np.array([1]), windows=1)
    merged = merge_sketches([a, b])
    assert (merged.feature_hist.tolist(), merged.score_hist.tolist()) == ([[5, 2]], [7])
    assert (merged.windows, merged.anomalies) == (7, 1)
    assert a.merge(unknown).anomalies is None
    with pytest.raises(SketchShapeError, match="sketch 1 has feature_hist shape"):
        merge_sketches([a, Sketch(np.array([[1, 2, 3]]), np.array([3]), 3)])
    with pytest.raises(SketchShapeError, match="score bins"):
        merge_sketches([a, Sketch(np.array([[1, 2]]), np.array([1, 2]), 3)])


def test_sketch_validates_and_is_read_only() -> None:
    s = Sketch(np.array([[1, 2]]), np.array([3]), windows=3, anomalies=0)
    with pytest.raises(ValueError, match="read-only"):
        s.feature_hist[0, 0] = 9
    with pytest.raises(SketchShapeError, match="2-D"):
        Sketch(np.array([1, 2]), np.array([3]), 3)
    with pytest.raises(ValueError, match="non-negative integer"):
        Sketch(np.array([[1, -2]]), np.array([3]), 3)
    with pytest.raises(ValueError, match="non-negative integer"):
        Sketch(np.array([[1.5, 2]]), np.array([3]), 3)
    with pytest.raises(ValueError, match="anomalies"):
        Sketch(np.array([[1, 2]]), np.array([3]), windows=3, anomalies=4)


def test_pad_counts() -> None:
    assert pad_counts([[1], [2, 3]], width=3).tolist() == [[1, 0, 0], [2, 3, 0]]
    with pytest.raises(SketchShapeError, match="more than the width"):
        pad_counts([[1, 2, 3]], width=2)


def test_from_stats_pads_ragged_features_to_the_manifest() -> None:
    s = Sketch.from_stats(stats([[1, 8, 1], [2, 3, 3, 2]], [4, 3, 2, 1]), REFERENCE)
    assert s.feature_hist.tolist() == [[1, 8, 1, 0], [2, 3, 3, 2]]
    assert (s.score_hist.tolist(), s.windows, s.anomalies) == ([4, 3, 2, 1], 10, 1)


@pytest.mark.parametrize(
    ("feature_hist", "score_hist", "message"),
    [
        ([[1, 8, 1]], [4, 3, 2, 1], "has 1 features, the manifest 2"),
        ([[1, 8, 1], [2, 3, 3]], [4, 3, 2, 1], "feature 1 has 3 bins, the manifest 4"),
        ([[1, 8, 1], [2, 3, 3, 2]], [4, 3, 3], "score histogram has 3 bins, the manifest 4"),
    ],
)
def test_from_stats_refuses_another_manifests_bins(
    feature_hist: list[list[int]], score_hist: list[int], message: str
) -> None:
    with pytest.raises(SketchShapeError, match=message):
        Sketch.from_stats(stats(feature_hist, score_hist), REFERENCE)


def test_from_reference() -> None:
    s = Sketch.from_reference(REFERENCE)
    assert s.feature_hist.tolist() == [[1, 8, 1, 0], [2, 3, 3, 2]]
    assert (s.windows, s.anomalies) == (10, None)


def test_from_values_bins_like_the_agent() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 2)) * [1.0, 10.0] + [0.5, 20.0]
    scores = rng.uniform(size=50)
    s = Sketch.from_values(x, REFERENCE.bin_edges, scores=scores, score_edges=REFERENCE.score_bin_edges)
    expected = [histogram_counts(x[:, j], np.array(e)).tolist() for j, e in enumerate(REFERENCE.bin_edges)]
    assert s.feature_hist.tolist() == pad_counts(expected).tolist()
    assert s.score_hist.tolist() == histogram_counts(scores, np.array(REFERENCE.score_bin_edges)).tolist()
    with pytest.raises(SketchShapeError, match=r"expected \(windows, 2\) features"):
        Sketch.from_values(x[:, :1], REFERENCE.bin_edges)


sketches = st.tuples(histogram_matrix((3, 4)), histogram_matrix((1, 5)), st.integers(0, 1000)).map(
    lambda t: Sketch(t[0], t[1][0], windows=1000 + t[2], anomalies=t[2])
)


def same(a: Sketch, b: Sketch) -> bool:
    return (
        np.array_equal(a.feature_hist, b.feature_hist)
        and np.array_equal(a.score_hist, b.score_hist)
        and (a.windows, a.anomalies) == (b.windows, b.anomalies)
    )


@given(sketches, sketches, sketches)
def test_merge_is_associative_and_commutative(a: Sketch, b: Sketch, c: Sketch) -> None:
    assert same(a.merge(b), b.merge(a))
    assert same(a.merge(b).merge(c), a.merge(b.merge(c)))
    assert same(merge_sketches([a, b, c]), merge_sketches([c, a, b]))

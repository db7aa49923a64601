"""The C-MAPSS recipe: labels from each engine's end of life, windows per engine, a verified reproducible version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra.datasets import CMAPSS_SENSORS
from models.cmapss import (
    BASE_SET_PARAM,
    DEFAULT_WINDOW,
    build_cmapss,
    engine_windows,
    fit_cmapss,
    load_engines,
    split_engines,
)
from models.errors import VersionExistsError
from models.onnx_export import onnx_scores, onnx_session
from models.training import classification_metrics
from models.version import read_version
from shared.errors import SourceError
from shared.features import WindowSpec, extract
from shared.manifest import MANIFEST_FILE
from shared.wire import replace
from tests.evaluation.synthetic import synthetic_rows, write_cmapss
from tests.fixtures.data import require_files

WINDOW = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=2)
SMALL = {"n_estimators": 30}


@pytest.fixture(scope="module")
def cmapss_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cmapss(tmp_path_factory.mktemp("cmapss") / "train_SYN.txt", synthetic_rows(30, seed=3))


def test_engines_load_in_cycle_order_with_the_replayed_columns(cmapss_file: Path) -> None:
    engines = load_engines(cmapss_file)
    rows = np.loadtxt(cmapss_file)
    assert sorted(engines) == list(range(1, 31))
    assert engines[4].shape == ((rows[:, 0] == 4).sum(), len(CMAPSS_SENSORS))
    assert np.array_equal(engines[4], rows[rows[:, 0] == 4][:, 2:])


@pytest.mark.parametrize("content", ["1 2 3\n", "not numbers at all\n", ""])
def test_a_file_that_is_not_cmapss_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(SourceError, match=r"bad\.txt"):
        load_engines(path)
    with pytest.raises(SourceError, match="does not exist"):
        load_engines(tmp_path / "missing.txt")


def test_windows_are_per_engine_and_labelled_from_its_last_cycle(cmapss_file: Path) -> None:
    engines = load_engines(cmapss_file)
    data = engine_windows(engines, [7, 2], WINDOW, horizon=30)
    for unit in (7, 2):
        life = len(engines[unit])
        mine = data.unit == unit
        assert data.cycle[mine].tolist() == list(range(WINDOW.size, life + 1, WINDOW.step))
        assert data.y[mine].tolist() == [int(life - c <= 30) for c in data.cycle[mine]]
        first = np.flatnonzero(mine)[0]  # the first window of an engine is its own first cycles
        assert np.array_equal(data.X[first], extract(engines[unit][: WINDOW.size]))
    assert data.unit.tolist()[0] == 7  # in the order asked
    assert len(engine_windows(engines, [], WINDOW)) == 0


def test_engine_splits_are_seeded_disjoint_and_complete() -> None:
    units = list(range(1, 51))
    train, val, hold = split_engines(units, (0.6, 0.2, 0.2), seed=4)
    assert (len(train), len(val), len(hold)) == (30, 10, 10)
    assert sorted(train + val + hold) == units
    assert split_engines(units, (0.6, 0.2, 0.2), seed=4) == [train, val, hold]
    assert split_engines(units, (0.6, 0.2, 0.2), seed=5) != [train, val, hold]


def test_the_version_is_real_data_names_its_base_set_and_is_reproducible(cmapss_file: Path, tmp_path: Path) -> None:
    manifest = build_cmapss(tmp_path / "a", path=cmapss_file, seed=3, window=WINDOW, params=SMALL)
    again = build_cmapss(tmp_path / "b", path=cmapss_file, seed=3, window=WINDOW, params=SMALL)
    assert manifest.onnx_sha256 == again.onnx_sha256
    t = manifest.training
    assert (t.data_kind, manifest.provenance.created_by, manifest.window) == ("real", "recipe:cmapss", WINDOW)
    assert t.params[BASE_SET_PARAM] == f"cmapss:{cmapss_file}" and t.params["horizon"] == 30
    assert t.params["n_engines"] == 30 and t.sources[0].startswith(f"cmapss:{cmapss_file} engines=30")
    assert manifest.metrics["parity_label_flips"] == 0.0 and manifest.metrics["parity_max_abs_diff"] < 1e-4
    assert manifest.metrics["f1"] > 0.7  # the synthetic wear is easy to see
    loaded, _ = read_version(tmp_path / "a")
    assert loaded == manifest and json.loads((tmp_path / "a" / MANIFEST_FILE).read_text())["version"] == "v1"
    with pytest.raises(VersionExistsError):
        build_cmapss(tmp_path / "a", path=cmapss_file, seed=3, window=WINDOW, params=SMALL)


def test_units_choose_the_engines_and_unknown_ones_are_refused(cmapss_file: Path, tmp_path: Path) -> None:
    manifest = build_cmapss(tmp_path / "v", path=cmapss_file, units=range(1, 21), seed=3, window=WINDOW,
                            params=SMALL, base_set="cmapss:train_SYN.txt")
    assert manifest.training.params["n_engines"] == 20
    assert manifest.training.params[BASE_SET_PARAM] == "cmapss:train_SYN.txt"
    with pytest.raises(SourceError, match="no engine"):
        build_cmapss(tmp_path / "w", path=cmapss_file, units=[1, 99], window=WINDOW)


def test_an_oracle_split_without_holdout_checks_parity_on_validation(cmapss_file: Path) -> None:
    fitted = fit_cmapss(load_engines(cmapss_file), list(range(1, 31)), seed=1, window=WINDOW, split=(0.8, 0.2, 0.0),
                        params=SMALL)
    train, val, hold = fitted.split
    assert (len(train), len(val), hold) == (24, 6, [])
    assert fitted.metrics["parity_label_flips"] == 0.0


@pytest.mark.dataset
def test_fd001_v1_predicts_fd001_failures_and_is_blind_to_fd002_regimes(datasets_dir: Path) -> None:
    folder = require_files(datasets_dir / "cmapss", ("train_FD001.txt", "train_FD002.txt"), "C-MAPSS")
    window = replace(DEFAULT_WINDOW, step=3)
    fd001 = load_engines(folder / "train_FD001.txt")
    fitted = fit_cmapss(fd001, sorted(fd001), seed=7, window=window, params={"n_estimators": 60})
    assert fitted.metrics["f1"] > 0.75 and fitted.metrics["roc_auc"] > 0.97  # FD001 holdout engines
    fd002 = load_engines(folder / "train_FD002.txt")
    data = engine_windows(fd002, sorted(fd002)[::4], window)
    shifted = classification_metrics(data.y, onnx_scores(onnx_session(fitted.onnx_bytes), data.X), fitted.threshold)
    # Six operating regimes instead of one: the same model is close to useless on FD002.
    assert shifted["f1"] < 0.6 and shifted["f1"] < fitted.metrics["f1"] - 0.25

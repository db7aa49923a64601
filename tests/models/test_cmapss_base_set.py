"""The hub retrains from a C-MAPSS base set (`hub.training.base_sets`): chosen, resolved, loaded, and inherited.

A v1 built by the C-MAPSS recipe names its base set; a retrain from it fits on that file's engines plus the
field's labels, records the base set in its manifest's sources, and a retrain from that child finds it there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models.cmapss
from hub.labels.service import LabelSettings, validate_and_save
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.store.rows import DeviceMessage, IngestRecord
from hub.store.sqlite import SqliteHubStore
from hub.training.base_sets import BASE_SET_PARAM, SIM, CmapssSpec, base_set, base_set_name, resolve_cmapss
from hub.training.dataset import SimSpec
from hub.training.errors import RetrainError
from hub.training.service import TrainingService
from hub.training.settings import GateSettings, TrainingSettings
from hub.training.triggers import TriggerPolicy
from infra.datasets import CMAPSS_SENSORS
from models.cmapss import build_cmapss, engine_windows, load_engines
from models.version import read_version
from shared.features import WindowSpec
from shared.manifest import ModelManifest
from shared.messages import Annotation, Sample, Status
from shared.wire import replace
from tests.evaluation.synthetic import synthetic_rows, write_cmapss

WINDOW = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=2)
SMALL = {"n_estimators": 30}
T0 = 1_700_000_000.0


@dataclass
class World:
    base_file: Path
    v1: ModelManifest
    store: SqliteHubStore
    registry: Registry
    root: Path


def field_messages(rows: np.ndarray) -> list[DeviceMessage]:
    """A shifted fleet on four gateways: every window sampled, every window confirmed by a technician."""
    engines = {u: rows[rows[:, 0] == u][:, 2:] for u in np.unique(rows[:, 0]).astype(int)}
    data = engine_windows(engines, sorted(engines), WINDOW)
    messages: list[DeviceMessage] = [Status(device_id=f"gw-{i}", ts=T0, state="online", site="syn", model_version="v1")
                                     for i in range(4)]
    for k in range(len(data)):
        device, ts = f"gw-{int(data.unit[k]) % 4}", T0 + 10.0 * k
        trace = f"t-{k:05d}"
        messages.append(Sample(device_id=device, ts=ts, trace_id=trace, window_start=ts, window_end=ts,
                               unit=str(data.unit[k]), score=0.5, threshold=0.5, decision=False,
                               features=data.X[k].tolist(), model_version="v1", reason="random"))
        messages.append(Annotation(device_id=device, ts=ts + 1, trace_id=trace, technician_id="tech",
                                   label="fault" if data.y[k] else "no_fault", signal="confirmed"))
    return messages


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("base-set")
    base_file = write_cmapss(root / "data" / "train_SYN.txt", synthetic_rows(30, seed=3))
    v1 = build_cmapss(root / "v1", path=base_file, seed=3, window=WINDOW, params=SMALL)
    store = SqliteHubStore(root / "hub.db")
    registry = Registry(store, root / "models", SigningKey.generate())
    registry.register(root / "v1", actor="test", reason="C-MAPSS v1", status="active")
    field = synthetic_rows(40, seed=9, shift=2.0, first_unit=101)
    store.ingest_batch([IngestRecord(m, T0 + 1e6) for m in field_messages(field)])
    yield World(base_file, v1, store, registry, root)
    store.close()


def _settings(**overrides: Any) -> TrainingSettings:
    values: dict[str, Any] = {
        "split_block_s": 100.0, "sim_weight": 0.3, "params": SMALL, "latency_runs": 10,
        "triggers": TriggerPolicy(min_total_labels=10), "gate": GateSettings(latency_budget_ms=1000.0),
        **overrides,
    }
    return TrainingSettings(**values)


def _with(manifest: ModelManifest, *, params: dict[str, object] | None = None,
          sources: list[str] | None = None) -> ModelManifest:
    training = replace(manifest.training, params=params or {}, sources=sources or [])
    return replace(manifest, training=training)


def test_the_recipe_and_the_hub_agree_on_the_parameter_name() -> None:
    assert models.cmapss.BASE_SET_PARAM == BASE_SET_PARAM


def test_settings_then_recorded_parameter_then_sources_then_the_simulator(world: World) -> None:
    v1 = world.v1
    assert base_set_name(v1, TrainingSettings()) == f"cmapss:{world.base_file}"
    assert base_set_name(v1, TrainingSettings(base_set="cmapss:other.txt")) == "cmapss:other.txt"
    from_sources = _with(v1, sources=["cmapss:/data/train_FD001.txt engines=100 rows=9 positives=1", "field:x"])
    assert base_set_name(from_sources, TrainingSettings()) == "cmapss:/data/train_FD001.txt"
    assert base_set_name(_with(v1), TrainingSettings()) == SIM


def test_cmapss_rows_fit_only_weighted_and_apart_from_the_field(world: World) -> None:
    spec, rows = base_set(world.v1, _settings(), WINDOW)
    engines = load_engines(world.base_file)
    expected = engine_windows(engines, sorted(engines), WINDOW, horizon=30)
    assert isinstance(spec, CmapssSpec) and spec.path == str(world.base_file)
    assert (spec.n_machines, spec.steps, spec.horizon) == (30, sum(len(v) for v in engines.values()), 30)
    assert spec.describe().startswith(f"cmapss:{world.base_file} engines=30 ")
    assert rows.source == "sim" and len(rows) == len(expected)
    assert np.array_equal(rows.X, expected.X) and np.array_equal(rows.y, expected.y)
    assert not rows.validation.any()  # the threshold is chosen on the field's labels
    assert set(rows.weight.tolist()) == {0.3} and set(rows.cohort.tolist()) == {"base/train_SYN"}
    assert rows.group[0] == f"train_SYN:{expected.unit[0]}"
    none_spec, none = base_set(world.v1, _settings(sim_weight=0.0), WINDOW)
    assert isinstance(none_spec, CmapssSpec) and len(none) == 0


def test_a_bare_file_name_is_found_in_the_datasets_folder(world: World, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_cmapss(tmp_path / "cmapss" / "train_X.txt", synthetic_rows(3, seed=1))
    monkeypatch.setenv("FLEETLOOP_DATASETS", str(tmp_path))
    assert resolve_cmapss("cmapss:train_X.txt") == tmp_path / "cmapss" / "train_X.txt"
    with pytest.raises(RetrainError, match=r"train_Y\.txt does not exist"):
        resolve_cmapss("cmapss:train_Y.txt")


@pytest.mark.parametrize("name", ["cmapss:", "parquet:/x", "cmapss:/nowhere/train_FD009.txt"])
def test_unknown_or_missing_base_sets_are_retrain_errors(world: World, name: str) -> None:
    with pytest.raises(RetrainError, match="base set"):
        base_set(world.v1, _settings(base_set=name), WINDOW)


def test_the_simulator_base_set_is_unchanged(initial_model_dir: Path) -> None:
    manifest, _ = read_version(initial_model_dir)
    spec, rows = base_set(manifest, TrainingSettings(sim_n_machines=12, sim_steps=400), manifest.window)
    assert type(spec) is SimSpec and spec.describe().startswith("sim:n_machines=12,steps=400")
    assert rows.source == "sim" and len(rows) > 0 and rows.validation.any()


def test_a_retrain_fits_on_the_base_set_and_its_child_inherits_it(world: World) -> None:
    service = TrainingService(world.store, world.registry, _settings(), labels=LabelSettings(),
                              staging_dir=world.root / "staging", clock=lambda: T0 + 2e6)
    validate_and_save(world.store, LabelSettings(), now=T0 + 2e6)
    job = service.retrain_now(actor="test", reason="regime shift", now=T0 + 2e6)
    assert job.status == "succeeded", job.error
    child = world.registry.manifest(job.result_version or "")
    assert child is not None and child.parent_version == "v1"
    t = child.training
    assert t.data_kind == "mixed"
    assert t.sources[0].startswith(f"cmapss:{world.base_file} engines=30 ") and t.sources[1].startswith("field:")
    assert job.details["counts"]["sim"] == len(base_set(world.v1, _settings(), WINDOW)[1])
    assert t.params["horizon"] == 30 and BASE_SET_PARAM not in t.params
    # A retrain from the child (no settings) replays the same base set, found in the child's sources.
    assert base_set_name(child, TrainingSettings()) == f"cmapss:{world.base_file}"
    spec, rows = base_set(child, _settings(), WINDOW)
    assert isinstance(spec, CmapssSpec) and spec.path == str(world.base_file) and len(rows) > 0

"""A hub that has served the initial model to a drifted fleet: real SQLite store, signed registry with v1
active, the fleet's predictions (features included) and confirmed annotations ingested, a label set validated.

The drift is a vibration sensor reading 1.0 mm/s low on every machine: it hides the wear signal the initial
model leans on, so the incumbent misses faults and feedback from the field can win them back. (A pressure
offset barely moves the initial model, which does not rely on absolute pressure: nothing to win back.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hub.labels.service import LabelSettings, validate_and_save
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.store.rows import DeviceMessage, IngestRecord
from hub.store.sqlite import SqliteHubStore
from hub.training.service import TrainingService
from hub.training.settings import TrainingSettings
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.messages import Annotation, Anomaly, Sample, Status
from sim.dataset import SimDataset, simulate_windows
from sim.drift import SensorOffset

T0 = 1_700_000_000.0
STEP_S = 10.0  # one simulated step is 10 s of device time
DRIFT = SensorOffset(sensor="vibration", offset=-1.0, start_t=0)
FLEET_SEED = 11  # not the initial model's seed (7): other machines than it trained on


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def training_settings(**overrides: Any) -> TrainingSettings:
    """The defaults, with 10-minute split blocks: a dozen machines give ~500 blocks instead of ~80."""
    return TrainingSettings(**{"split_block_s": 600.0, **overrides})


@dataclass
class World:
    store: SqliteHubStore
    registry: Registry
    clock: Clock
    root: Path
    label_set_id: str
    fleet: SimDataset

    def service(self, *, settings: TrainingSettings | None = None, labels: LabelSettings | None = None,
                label_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> TrainingService:
        return TrainingService(
            self.store, self.registry, settings or training_settings(), labels=labels or LabelSettings(),
            staging_dir=self.root / "staging", clock=self.clock, label_transform=label_transform,
        )


def fleet_messages(ds: SimDataset, scores: np.ndarray, threshold: float, *, t0: float = T0) -> list[DeviceMessage]:
    """What the fleet sent: a status per machine, each window as an anomaly (flagged) or a random sample,
    and a technician's confirmed verdict (the simulator's ground truth) on every window. Ids are stable."""
    messages: list[DeviceMessage] = []
    for machine in ds.machines:
        i = int(np.flatnonzero(ds.machine_id == machine)[0])
        messages.append(Status(device_id=machine, ts=t0, state="online", site=str(ds.site[i]),
                               asset_type=str(ds.asset_type[i]), model_version="v1"))
    for k in range(len(ds)):
        device, ts = str(ds.machine_id[k]), t0 + STEP_S * float(ds.window_end[k])
        trace_id = f"{device}-{int(ds.window_end[k]):06d}"
        flagged = bool(scores[k] >= threshold)
        common: dict[str, Any] = dict(
            device_id=device, ts=ts, trace_id=trace_id, window_start=ts - STEP_S * (ds.spec.size - 1),
            window_end=ts, score=float(scores[k]), threshold=threshold, decision=flagged,
            features=ds.X[k].tolist(), model_version="v1",
        )
        messages.append(Anomaly(**common) if flagged else Sample(**common, reason="random"))
        messages.append(Annotation(device_id=device, ts=ts + 60.0, trace_id=trace_id, annotation_id=f"a-{trace_id}",
                                   label="fault" if ds.y[k] else "no_fault", technician_id=f"tech-{k % 3}",
                                   signal="confirmed", model_version="v1"))
    return messages


def build_world(root: Path, initial_model_dir: Path, *, n_machines: int = 12, steps: int = 2500,
                drifts: tuple[SensorOffset, ...] = (DRIFT,)) -> World:
    clock = Clock(T0 + STEP_S * steps + 3600.0)
    store = SqliteHubStore(root / "hub.db")
    registry = Registry(store, root / "models", SigningKey.generate(), clock=clock)
    registry.register(initial_model_dir, actor="test", reason="the initial model", status="active")
    manifest, onnx = read_version(initial_model_dir)
    fleet = simulate_windows(n_machines, steps, FLEET_SEED, manifest.window, 100, drifts=list(drifts))
    scores = onnx_scores(onnx_session(onnx), fleet.X)
    store.ingest_batch([IngestRecord(m, clock.now) for m in fleet_messages(fleet, scores, manifest.threshold)])
    label_set = validate_and_save(store, LabelSettings(), now=clock.now)
    return World(store, registry, clock, root, label_set.row.id, fleet)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[World]:
    """One drifted hub per test module (building it takes about a second)."""
    world = build_world(tmp_path_factory.mktemp("hub"), initial_model_dir)
    yield world
    world.store.close()

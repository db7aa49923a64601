"""The role protocols: `SqliteHubStore` (and each role's query mixin) satisfies every port, signature by signature."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from hub.store import open_store
from hub.store.ports import (
    DeviceStore,
    DriftStore,
    HubStore,
    IngestStore,
    LabelStore,
    RegistryStore,
    RolloutStore,
    TrainingStore,
)
from hub.store.sqlite import SqliteHubStore
from hub.store.sqlite.devices import DeviceQueries
from hub.store.sqlite.drift import DriftQueries
from hub.store.sqlite.ingest import IngestQueries
from hub.store.sqlite.labels import LabelQueries
from hub.store.sqlite.registry import RegistryQueries
from hub.store.sqlite.rollouts import RolloutQueries
from hub.store.sqlite.training import TrainingQueries

ROLES: list[tuple[type, type]] = [
    (IngestStore, IngestQueries),
    (DeviceStore, DeviceQueries),
    (LabelStore, LabelQueries),
    (DriftStore, DriftQueries),
    (RegistryStore, RegistryQueries),
    (RolloutStore, RolloutQueries),
    (TrainingStore, TrainingQueries),
]


def methods(port: type) -> set[str]:
    """The methods a protocol declares itself (not those it inherits)."""
    return {n for n, v in vars(port).items() if callable(v) and not n.startswith("_")}


def shape(fn: object) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults: what a caller of the port relies on."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


def test_every_port_has_methods_and_no_two_ports_share_one() -> None:
    seen: set[str] = set()
    for port, _ in ROLES:
        own = methods(port)
        assert own, port.__name__
        assert not own & seen, f"{port.__name__} repeats {sorted(own & seen)}"
        seen |= own
    assert methods(HubStore) == {"close"}
    assert all(issubclass(HubStore, port) for port, _ in ROLES)


@pytest.mark.parametrize(("port", "mixin"), ROLES, ids=[p.__name__ for p, _ in ROLES])
def test_each_role_mixin_implements_its_port_with_the_same_signatures(port: type, mixin: type) -> None:
    assert issubclass(mixin, port)
    for name in methods(port):
        assert name in vars(mixin), f"{mixin.__name__} does not define {name}"
        assert shape(getattr(mixin, name)) == shape(getattr(port, name)), f"{mixin.__name__}.{name}"


def test_the_sqlite_store_is_every_port(tmp_path: Path) -> None:
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        for port, _ in ROLES:
            assert isinstance(store, port), port.__name__
        assert isinstance(store, HubStore)
        ingest: IngestStore = store  # mypy checks these assignments structurally
        training: TrainingStore = store
        hub: HubStore = store
        assert ingest.counts().anomalies == 0 and training.training_jobs() == [] and hub.devices() == []
    finally:
        store.close()
    opened = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert isinstance(opened, HubStore)
    opened.close()


def test_a_store_missing_a_port_method_is_not_that_port() -> None:
    class Partial:
        def devices(self) -> list[object]:
            return []

        def device(self, device_id: str) -> None:
            return None

    assert not isinstance(Partial(), DeviceStore)  # set_cohort is missing

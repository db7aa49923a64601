"""The production-mode fleet fixture of tests/field (see `tests.field.harness`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetloop.devbroker import DevBroker
from tests.field.harness import FieldFleet


@pytest.fixture
def field_fleet(tmp_path: Path, fresh_broker: DevBroker, initial_model_dir: Path) -> Iterator[FieldFleet]:
    """A fresh broker with the ACL, and a fleet whose hub and agents are started by the test, in production mode."""
    fleet = FieldFleet(tmp_path, fresh_broker, initial_model_dir)
    try:
        yield fleet
    finally:
        fleet.close()

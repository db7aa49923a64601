"""Fixtures of the agent.models tests: a signing key and a signed version ``v2`` of the initial model."""

from __future__ import annotations

import pytest

from hub.registry.signing import SigningKey
from tests.agent.models.test_manager import signed_variant


@pytest.fixture(scope="module")
def key():
    return SigningKey.generate()


@pytest.fixture(scope="module")
def v2(tmp_path_factory, initial_model_dir, key):
    return signed_variant(initial_model_dir, tmp_path_factory.mktemp("units") / "v2", "v2", key)

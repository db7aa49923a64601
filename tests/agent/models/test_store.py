"""The model store refuses what does not verify or load, and the old version keeps serving."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from agent.app import build_agent
from agent.db import AgentDB
from agent.models.store import ModelStore
from agent.sources.memory import ArraySource
from shared.errors import ModelIntegrityError, ModelLoadError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, sha256_bytes
from tests.agent.helpers import agent_settings


def _variant(src, dst, version, *, onnx_bytes=None):
    """A copy of version dir `src` renamed to `version`, optionally with other model bytes."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST_FILE).read_text())
    manifest["version"] = version
    if onnx_bytes is not None:
        (dst / MODEL_FILE).write_bytes(onnx_bytes)
        manifest["onnx_sha256"] = sha256_bytes(onnx_bytes)
    (dst / MANIFEST_FILE).write_text(json.dumps(manifest))
    return dst


@pytest.fixture
def store(tmp_path, initial_model_dir):
    db = AgentDB(tmp_path / "agent.db")
    s = ModelStore(tmp_path / "models", db)
    s.activate(s.install(initial_model_dir).version)
    return s


def test_install_activate_rollback(tmp_path, store, initial_model_dir):
    v2 = _variant(initial_model_dir, tmp_path / "v2src", "v2")
    store.install(v2)
    assert store.activate("v2").version == "v2"
    assert (store.active_version, store.previous_version) == ("v2", "v1")
    assert store.rollback().version == "v1"
    assert store.versions() == ["v1", "v2"]


def test_tampered_artifact_is_refused_at_install(tmp_path, store, initial_model_dir):
    bad = _variant(initial_model_dir, tmp_path / "bad", "v3")
    data = bytearray((bad / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        store.install(bad)
    assert "v3" not in store.versions()
    assert store.active_version == "v1"


def test_broken_model_with_matching_hash_is_refused_and_old_keeps_serving(tmp_path, store, initial_model_dir):
    broken = _variant(initial_model_dir, tmp_path / "broken", "v4", onnx_bytes=b"not an onnx model")
    store.install(broken)  # integrity is fine: the bytes are what the manifest says
    with pytest.raises(ModelLoadError):
        store.activate("v4")
    assert store.active_version == "v1"
    assert store.load_active().version == "v1"


def test_agent_falls_back_when_the_active_model_was_tampered_on_disk(tmp_path, broker, initial_model_dir):
    settings = agent_settings(tmp_path, broker, "dev-5", initial_model_dir)
    db = AgentDB(settings.db_path)
    store = ModelStore(settings.model_dir, db)
    store.activate(store.install(initial_model_dir).version)
    store.install(_variant(initial_model_dir, tmp_path / "v2src", "v2"))
    store.activate("v2")
    db.close()
    (settings.model_dir / "v2" / MODEL_FILE).write_bytes(b"tampered after install")

    values = np.random.default_rng(0).normal(size=(200, 6)) + 50
    agent = build_agent(settings, ArraySource(["temperature", "vibration", "pressure", "flow", "current", "rpm"],
                                              values), connect=False)
    assert agent.model.version == "v1"
    counters = agent.run(max_windows=10)
    assert counters.windows == 10
    events = [json.loads(r.payload) for r in agent.db.due_outbox(1e12, 100) if r.topic.endswith("model/event")]
    assert [(e["event"], e["version"]) for e in events[:2]] == [("refused", "v2"), ("loaded", "v1")]
    assert "sha256" in events[0]["detail"]

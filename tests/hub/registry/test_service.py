"""The model registry on a real store: signed artifacts, statuses with an audit trail, assignments."""

from __future__ import annotations

import io
import tarfile

import pytest

from hub.registry.service import Registry, RegistryError
from hub.registry.signing import SigningKey
from hub.store import open_store
from shared.errors import ModelError, ModelIntegrityError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE
from shared.signing import verify_manifest
from shared.wire import replace


@pytest.fixture
def registry(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    yield Registry(store, tmp_path / "models", SigningKey.generate(), clock=lambda: 1000.0)
    store.close()


def test_register_signs_and_records(registry, initial_model_dir):
    row = registry.register(initial_model_dir, actor="operator:ana", reason="bootstrap", status="active")
    assert (row.version, row.status, row.created_by) == ("v1", "active", "recipe:initial")
    directory = registry.path("v1")
    verify_manifest(registry.key.public_key, (directory / MANIFEST_FILE).read_bytes(), row.signature)
    assert registry.active_version() == "v1"
    assert registry.manifest("v1").version == "v1"
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(initial_model_dir, actor="x", reason="again")


def test_transitions_are_audited_with_who_when_why(registry, initial_model_dir):
    registry.register(initial_model_dir, actor="hub:retrain", reason="drift on fleet@v0")
    registry.transition("v1", "rejected", actor="hub:gate", action="gate", reason="recall dropped 0.3",
                        gate={"verdict": "fail", "checks": [{"name": "recall", "value": 0.3, "limit": 0.02}]})
    audit = registry.store.model_audit(version="v1")
    assert [(a.action, a.from_status, a.to_status, a.actor) for a in audit] == [
        ("registered", None, "candidate", "hub:retrain"), ("gate", "candidate", "rejected", "hub:gate")]
    assert audit[1].reason == "recall dropped 0.3" and audit[1].ts == 1000.0
    assert registry.get("v1").gate["verdict"] == "fail"
    with pytest.raises(RegistryError, match="no model version"):
        registry.transition("v9", "active", actor="x", action="promote", reason="?")


def test_artifact_and_assignment(registry, initial_model_dir):
    registry.register(initial_model_dir, actor="a", reason="r")
    blob = registry.artifact("v1")
    assert blob == registry.artifact("v1")  # deterministic: same bytes every time
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        assert sorted(tar.getnames()) == sorted([MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE])
    assign = registry.assignment("v1", mode="active", url="http://hub/models/v1/artifact", rollout_id="r1")
    assert assign.sha256 == registry.get("v1").sha256 and assign.signature == registry.get("v1").signature
    (registry.path("v1") / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelError, match="no longer matches"):
        registry.assignment("v1", mode="active", url="x")


def test_a_broken_version_is_never_registered(registry, initial_model_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(initial_model_dir, bad)
    (bad / MODEL_FILE).write_bytes(b"not the model")
    with pytest.raises(ModelIntegrityError):
        registry.register(bad, actor="a", reason="r")
    assert registry.store.model_versions() == []


def test_the_artifact_is_the_same_bytes_an_hour_later(registry, initial_model_dir, monkeypatch):
    """gzip stamps its header with the time unless told not to: devices and caches must see one artifact."""
    import time

    registry.register(initial_model_dir, actor="a", reason="r")
    first = registry.artifact("v1")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3600.0)
    assert registry.artifact("v1") == first


def test_only_approved_versions_are_assigned_and_each_assignment_is_signed_for_one_device(tmp_path, initial_model_dir):
    """Issue 10 #5: a signature on the manifest means made by the hub; approval is the signed assignment, never
    issued for a rejected version, with a per-device counter that keeps growing across hub restarts."""
    from shared.signing import verify_assignment

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    key = SigningKey.generate()
    registry = Registry(store, tmp_path / "models", key, clock=lambda: 1000.0)
    registry.register(initial_model_dir, actor="a", reason="r")
    assign = registry.assignment("v1", mode="active", url="http://hub/models/v1/artifact")
    first = registry.signed_assignment(assign, device_id="dev-0", ttl_s=60)
    verify_assignment(key.public_key, first)
    assert (first.device_id, first.expires, first.counter, first.rollback) == ("dev-0", 1060.0, 1_000_000, False)
    with pytest.raises(ModelIntegrityError, match="bad assignment signature"):
        verify_assignment(key.public_key, replace(first, device_id="dev-1"))
    store.close()
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")  # a restarted hub, same clock: still counts up
    again = Registry(store, tmp_path / "models", key, clock=lambda: 1000.0)
    second = again.signed_assignment(assign, device_id="dev-0", ttl_s=60, rollback=True)
    assert second.counter == first.counter + 1 and second.rollback
    assert again.signed_assignment(assign, device_id="dev-1", ttl_s=60).counter == 1_000_000  # per device
    again.transition("v1", "rejected", actor="hub:gate", action="gate", reason="recall dropped")
    assert not again.approved("v1")
    with pytest.raises(ModelError, match="not approved"):
        again.assignment("v1", mode="active", url="x")
    store.close()

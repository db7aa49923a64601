"""Signed models on the agent: a pinned key accepts what the hub signed and refuses everything else."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from agent.app import build_agent, model_verifier
from agent.db import AgentDB
from agent.models.store import ModelStore
from agent.settings import AgentSettings
from hub.registry.signing import SigningKey
from shared.errors import ConfigError, ModelIntegrityError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, sha256_bytes
from shared.signing import Ed25519Verifier, public_key_from_text, verify_manifest


def _signed_copy(src, dst, key, version=None):
    shutil.copytree(src, dst)
    if version is not None:
        manifest = json.loads((dst / MANIFEST_FILE).read_text())
        manifest["version"] = version
        (dst / MANIFEST_FILE).write_text(json.dumps(manifest))
    key.sign_version(dst)
    return dst


def _store(tmp_path, key):
    return ModelStore(tmp_path / "models", AgentDB(tmp_path / "agent.db"), verifier=key.verifier())


def test_signature_round_trip_and_formats(tmp_path, key, initial_model_dir):
    version = _signed_copy(initial_model_dir, tmp_path / "v1", key)
    manifest_bytes = (version / MANIFEST_FILE).read_bytes()
    signature = (version / SIGNATURE_FILE).read_text()
    assert len(base64.b64decode(signature.strip())) == 64  # base64 of a raw Ed25519 signature, one line
    for pinned in (key.public_key_text(), key.public_key_pem(), key.public_key_pem().decode()):
        Ed25519Verifier(pinned).verify(manifest_bytes, signature.encode())
    assert public_key_from_text(key.public_key_text()) == key.public_key
    store = _store(tmp_path, key)
    assert store.activate(store.install(version).version).version == "v1"
    assert (tmp_path / "models" / "v1" / SIGNATURE_FILE).read_text() == signature


def test_tampered_manifest_is_refused(tmp_path, key, initial_model_dir):
    version = _signed_copy(initial_model_dir, tmp_path / "v1", key)
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    manifest["threshold"] = 0.01  # one field changed after signing
    (version / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="bad signature"):
        _store(tmp_path, key).install(version)


def test_tampered_model_is_refused_with_or_without_a_rehashed_manifest(tmp_path, key, initial_model_dir):
    version = _signed_copy(initial_model_dir, tmp_path / "v1", key)
    data = bytearray((version / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (version / MODEL_FILE).write_bytes(bytes(data))
    store = _store(tmp_path, key)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        store.install(version)
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    manifest["onnx_sha256"] = sha256_bytes(bytes(data))  # the attacker fixes the hash: the signature breaks
    (version / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="bad signature"):
        store.install(version)
    assert store.versions() == []


def test_unsigned_model_is_refused_when_a_key_is_pinned(tmp_path, key, initial_model_dir):
    with pytest.raises(ModelIntegrityError, match="not signed"):
        _store(tmp_path, key).install(initial_model_dir)


def test_wrong_key_is_refused(tmp_path, key, initial_model_dir):
    other = SigningKey.generate()
    version = _signed_copy(initial_model_dir, tmp_path / "v1", other)
    with pytest.raises(ModelIntegrityError, match=f"pinned key {key.key_id}"):
        _store(tmp_path, key).install(version)
    with pytest.raises(ModelIntegrityError, match="not base64"):
        verify_manifest(key.public_key, b"{}", b"not a signature!")


def test_a_signed_model_tampered_on_disk_after_install_is_not_served(tmp_path, key, initial_model_dir):
    store = _store(tmp_path, key)
    store.activate(store.install(_signed_copy(initial_model_dir, tmp_path / "v1", key)).version)
    store.install(_signed_copy(initial_model_dir, tmp_path / "v2", key, version="v2"))
    store.activate("v2")
    (tmp_path / "models" / "v2" / SIGNATURE_FILE).write_text(
        (tmp_path / "models" / "v1" / SIGNATURE_FILE).read_text())  # a valid signature, of another manifest
    assert store.load_active().version == "v1"
    assert store.refusals and "bad signature" in store.refusals[0][1]


def test_agent_needs_a_pinned_key_outside_dev_mode(tmp_path, key, initial_model_dir):
    base = {"device_id": "dev-sig", "data_dir": tmp_path / "a", "mqtt_password": "pw",
            "initial_model": initial_model_dir}
    with pytest.raises(ConfigError, match="FLEETLOOP_AGENT_MODEL_PUBLIC_KEY"):
        build_agent(AgentSettings(**base), connect=False)
    assert not (tmp_path / "a").exists()  # refused before creating anything
    assert model_verifier(AgentSettings(**base, dev_mode=True)) is None
    pub = tmp_path / "hub.pub"
    key.export_public_key(pub)
    for pinned in (str(pub), key.public_key_text(), key.public_key_pem().decode()):
        verifier = model_verifier(AgentSettings(**base, model_public_key=pinned))
        assert isinstance(verifier, Ed25519Verifier) and verifier.key_id == key.key_id
    for bad in ("/no/such/key.pem", "c2hvcnQ="):
        with pytest.raises(ConfigError, match="model_public_key"):
            model_verifier(AgentSettings(**base, model_public_key=bad))
    # pinned key + unsigned initial model: the agent refuses to serve it
    with pytest.raises(ModelIntegrityError, match="not signed"):
        build_agent(AgentSettings(**base, model_public_key=key.public_key_text()), connect=False)


def test_signed_agent_serves_a_signed_initial_model(tmp_path, key, initial_model_dir):
    from agent.sources.sim import SimSource

    version = _signed_copy(initial_model_dir, tmp_path / "v1", key)
    settings = AgentSettings(device_id="dev-sig", data_dir=tmp_path / "a", mqtt_password="pw",
                             initial_model=version, model_public_key=key.public_key_text())
    agent = build_agent(settings, SimSource("dev-sig", seed=1, rate=0, limit=300), connect=False)
    assert agent.run(max_windows=20).windows == 20
    assert agent.model.version == "v1"

"""The hub's signing key: created only in dev mode, private (0600), never overwritten; signs versions."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from hub.registry.signing import PUBLIC_SUFFIX, SigningKey, default_key_path, main
from shared.errors import ConfigError, ModelIntegrityError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE
from shared.signing import Ed25519Verifier, public_key_from_text


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_dev_mode_creates_a_private_key_once(tmp_path):
    path = default_key_path(tmp_path / "hub")
    key = SigningKey.load(path, dev_mode=True)
    assert _mode(path) == 0o600
    public = path.with_name(path.name + PUBLIC_SUFFIX)
    assert public_key_from_text(public.read_bytes()) == key.public_key
    again = SigningKey.load(path, dev_mode=True)
    assert again.key_id == key.key_id
    assert SigningKey.load(path, dev_mode=False).key_id == key.key_id  # a production hub uses it as it is
    with pytest.raises(FileExistsError):
        SigningKey.create(path)


def test_outside_dev_mode_a_missing_key_is_a_config_error(tmp_path):
    path = tmp_path / "keys" / "model-signing.pem"
    with pytest.raises(ConfigError, match=r"signing_key_file.*model-signing\.pem"):
        SigningKey.load(path, dev_mode=False)
    assert not path.exists()


def test_a_key_readable_by_others_is_refused_outside_dev_mode(tmp_path):
    path = tmp_path / "k.pem"
    SigningKey.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SigningKey.load(path, dev_mode=False)
    assert SigningKey.load(path, dev_mode=True)  # dev mode only warns
    path.write_text("not a key")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="PEM"):
        SigningKey.load(path, dev_mode=False)


def test_sign_version_writes_a_detached_signature_over_the_manifest_bytes(tmp_path, initial_model_dir):
    version = shutil.copytree(initial_model_dir, tmp_path / "v1")
    key = SigningKey.generate()
    signature_path = key.sign_version(version)
    assert signature_path == version / SIGNATURE_FILE
    Ed25519Verifier(key.public_key_text()).verify((version / MANIFEST_FILE).read_bytes(),
                                                  signature_path.read_bytes())
    other = SigningKey.generate()
    other.sign_version(version)  # re-signing (a key rotation) replaces the signature
    Ed25519Verifier(other.public_key).verify((version / MANIFEST_FILE).read_bytes(), signature_path.read_bytes())

    (version / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelIntegrityError, match="refusing to sign"):
        key.sign_version(version)


def test_command_line_keygen_pubkey_sign(tmp_path, initial_model_dir, capsys):
    version = shutil.copytree(initial_model_dir, tmp_path / "v1")
    path = tmp_path / "hub.pem"
    assert main(["keygen", str(path)]) == 0
    public = capsys.readouterr().out.strip()
    assert main(["keygen", str(path)]) == 2 and "never overwritten" in capsys.readouterr().err
    assert main(["pubkey", str(path)]) == 0 and capsys.readouterr().out.strip() == public
    assert main(["sign", str(path), str(version)]) == 0
    Ed25519Verifier(public).verify((version / MANIFEST_FILE).read_bytes(), (version / SIGNATURE_FILE).read_bytes())
    assert json.loads((version / MANIFEST_FILE).read_text())["version"] == "v1"

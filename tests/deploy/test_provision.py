"""`fleetloop provision init` and `register-model`: private identities, written once, that mosquitto accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from agent.app import verifier_from_key
from fleetloop.cli import main
from fleetloop.devbroker import HUB_USER, hash_password, mqtt_connack, passwd_line, password_matches, render_config
from fleetloop.fleet import plan_fleet
from fleetloop.provision import (
    PROBE_USER,
    SIM_USER,
    provision,
    read_slots,
    register_model,
    render_broker_config,
)
from fleetloop.tls import new_ca
from hub.app.settings import HubSettings
from hub.registry.signing import SigningKey
from infra.versions import read_version
from shared.errors import ConfigError
from tests.deploy.compose import ROOT
from tests.deploy.mosquitto import mosquitto_with


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def users(root: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in (root / "broker" / "passwd").read_text().splitlines())


def test_init_writes_a_private_tree_once(tmp_path: Path) -> None:
    first = provision(tmp_path, slots=4)
    assert [s.device_id for s in first.slots] == ["dev-0", "dev-1", "dev-2", "dev-3"]
    cohorts = [(s.machine.site, s.machine.asset_type) for s in plan_fleet(4, seed=0)]
    assert [(s.site, s.asset_type) for s in first.slots] == cohorts  # the simulator's machines, slot by slot
    assert list(users(tmp_path)) == [HUB_USER, SIM_USER, PROBE_USER, "dev-0", "dev-1", "dev-2", "dev-3"]
    for name in ("ca", "broker", "hub", "sim", "devices", "devices/slots/dev-2"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o700, name
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in ("model-signing.pem.pub", "model-signing.pub", "mqtt-ca.crt"):
            assert path.stat().st_mode & 0o777 == 0o600, path
    ca = (tmp_path / "ca" / "mqtt-ca.crt").read_bytes()
    for reader in ("broker", "hub", "sim", "devices"):  # every MQTT client verifies the broker with it
        assert (tmp_path / reader / "mqtt-ca.crt").read_bytes() == ca
    assert not [p for p in tmp_path.rglob("mqtt-ca.key") if p.parent.name != "ca"]  # the CA's key stays in ca/
    conf = (tmp_path / "broker" / "mosquitto.conf").read_text()
    assert "listener 8883\ncafile /mosquitto/auth/mqtt-ca.crt\ncertfile /mosquitto/auth/server.crt\n" in conf
    tokens = json.loads((tmp_path / "hub" / "tokens.json").read_text())
    assert sorted(tokens.values()) == ["operator", "technician", "viewer"] and min(map(len, tokens)) >= 32
    hub_password = tomllib.loads((tmp_path / "hub" / "secrets.toml").read_text())["mqtt_password"]
    assert password_matches(users(tmp_path)[HUB_USER], hub_password)
    assert hub_password not in "".join(p.read_text() for p in (tmp_path / "broker").iterdir())
    key = SigningKey.load(tmp_path / "hub" / "model-signing.pem", dev_mode=False)
    assert (tmp_path / "devices" / "model-signing.pub").read_bytes() == key.public_key_pem()
    assert "pattern read sensors/%u/readings" in (tmp_path / "broker" / "acl").read_text()

    before = files(tmp_path)
    again = provision(tmp_path, slots=4)
    assert again.created == [] and files(tmp_path) == before  # idempotent, byte for byte


def server_names(root: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate((root / "broker" / "server.crt").read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def test_the_ca_is_created_once_and_never_replaced(tmp_path: Path) -> None:
    provision(tmp_path, slots=1, tls_hosts=("mosquitto",))
    ca = files(tmp_path / "ca")
    assert set(ca) == {"mqtt-ca.crt", "mqtt-ca.key"} and server_names(tmp_path) == {"mosquitto", "localhost"}
    cert = x509.load_pem_x509_certificate((tmp_path / "broker" / "server.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca["mqtt-ca.crt"]))

    renamed = provision(tmp_path, slots=1, tls_hosts=("broker.example",))  # a new name: a new server certificate
    assert sorted(renamed.created) == ["broker/server.crt", "broker/server.key"]
    assert files(tmp_path / "ca") == ca and server_names(tmp_path) == {"broker.example", "localhost"}
    (tmp_path / "broker" / "server.key").unlink()  # a lost server key: reissued, by the same CA
    assert "broker/server.crt" in provision(tmp_path, slots=1, tls_hosts=("broker.example",)).created
    assert files(tmp_path / "ca") == ca

    (tmp_path / "ca" / "mqtt-ca.key").unlink()  # a lost CA key is an error, never a new CA: every client pins it
    with pytest.raises(ConfigError, match="cannot load the CA"):
        provision(tmp_path, slots=1)
    assert not (tmp_path / "ca" / "mqtt-ca.key").exists() and files(tmp_path / "ca")["mqtt-ca.crt"] == ca["mqtt-ca.crt"]
    (tmp_path / "ca" / "mqtt-ca.key").write_bytes(new_ca()[1])  # another CA's key beside this certificate
    with pytest.raises(ConfigError, match="is not the key of"):
        provision(tmp_path, slots=1)


def test_the_broker_config_is_the_repositorys_with_its_listener_on_tls() -> None:
    source = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
    rendered = render_broker_config(source)
    kept = [line for line in source.splitlines() if line.strip() and not line.startswith(("#", "listener"))]
    assert [line for line in rendered.splitlines() if line in kept] == kept  # everything else as written, in order
    assert [line for line in rendered.splitlines() if line.startswith(("listener", "cafile", "certfile", "keyfile"))
            ] == ["listener 8883", "cafile /mosquitto/auth/mqtt-ca.crt", "certfile /mosquitto/auth/server.crt",
                  "keyfile /mosquitto/auth/server.key"]
    with pytest.raises(ConfigError, match="several listeners"):
        render_broker_config(source + "listener 1884\n")
    with pytest.raises(ConfigError, match="absolute password_file"):
        render_broker_config(source.replace("password_file /mosquitto/auth/passwd", "password_file passwd"))
    # the dev renderer is unchanged: loopback, plain text, no TLS file
    dev = render_config(source + "certfile /x.crt\n", port=18830, workdir=Path("/w"))
    dev_lines = [line for line in dev.splitlines() if not line.startswith("#")]
    assert [line for line in dev_lines if line.startswith(("listener", "cafile", "certfile", "keyfile"))] == [
        "listener 18830 127.0.0.1"]


def test_more_slots_keep_every_existing_secret_and_hash(tmp_path: Path) -> None:
    provision(tmp_path, slots=2)
    before, lines = files(tmp_path), users(tmp_path)
    grown = provision(tmp_path, slots=3)
    assert grown.created == ["devices/slots/dev-2/mqtt_password", "devices/slots/dev-2/slot.json", "broker/passwd"]
    assert {k: v for k, v in users(tmp_path).items() if k != "dev-2"} == lines
    assert all(files(tmp_path)[k] == v for k, v in before.items() if k != "broker/passwd")
    assert [s.device_id for s in provision(tmp_path, slots=1).slots] == ["dev-0", "dev-1", "dev-2"]  # never revoked


def test_a_lost_password_gets_a_new_one_and_only_its_hash_changes(tmp_path: Path) -> None:
    provision(tmp_path, slots=2)
    lines = users(tmp_path)
    (tmp_path / "devices" / "slots" / "dev-1" / "mqtt_password").unlink()
    provision(tmp_path, slots=2)
    after = users(tmp_path)
    assert after["dev-1"] != lines["dev-1"] and {k: v for k, v in after.items() if k != "dev-1"} == {
        k: v for k, v in lines.items() if k != "dev-1"}
    assert password_matches(after["dev-1"], read_slots(tmp_path / "devices")[1].password)


def test_a_broken_tree_is_one_clear_error(tmp_path: Path) -> None:
    provision(tmp_path, slots=1)
    (tmp_path / "devices" / "slots" / "dev-0" / "slot.json").write_text("{")
    with pytest.raises(ConfigError, match="not a provisioned device slot"):
        provision(tmp_path, slots=1)
    (tmp_path / "devices" / "slots" / "dev-0" / "slot.json").unlink()
    provision(tmp_path, slots=1)  # a missing file is recreated
    (tmp_path / "hub" / "secrets.toml").write_text("nothing = 1\n")
    with pytest.raises(ConfigError, match="no mqtt_password"):
        provision(tmp_path, slots=1)
    with pytest.raises(ConfigError, match="at least 1"):
        provision(tmp_path / "other", slots=0)


def test_the_password_file_is_mosquittos_format() -> None:
    salt = bytes(range(12))
    assert hash_password("pw", salt=salt).startswith("$7$101$AAECAwQFBgcICQoL$")
    line = passwd_line("dev-0", "s3cret")
    assert password_matches(line.split(":", 1)[1], "s3cret") and not password_matches(line.split(":", 1)[1], "x")
    assert not password_matches("$6$salt$hash", "s3cret") and not password_matches("$7$x$y$z", "s3cret")
    with pytest.raises(ConfigError):
        passwd_line("a:b", "pw")


def test_hashes_from_mosquitto_passwd_are_recognised(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    assert tool, "mosquitto_passwd is not installed: run 'make mosquitto' (it installs the mosquitto package)"
    plain = tmp_path / "passwd"
    plain.write_text("dev-0:s3cret\n")
    subprocess.run([tool, "-U", str(plain)], check=True, capture_output=True)
    hashed = plain.read_text().strip().split(":", 1)[1]
    assert password_matches(hashed, "s3cret") and not password_matches(hashed, "other")


def test_a_real_mosquitto_accepts_the_provisioned_identities(tmp_path: Path) -> None:
    done = provision(tmp_path / "p", slots=3)
    hub_password = tomllib.loads((tmp_path / "p" / "hub" / "secrets.toml").read_text())["mqtt_password"]
    sim_password = (tmp_path / "p" / "sim" / "mqtt_password").read_text().strip()
    probe_password = (tmp_path / "p" / "broker" / "probe.password").read_text().strip()
    with mosquitto_with(tmp_path / "p" / "broker" / "passwd", tmp_path / "p" / "broker" / "acl",
                        tmp_path / "broker") as port:
        for user, password in [(HUB_USER, hub_password), (SIM_USER, sim_password), (PROBE_USER, probe_password),
                               *((s.device_id, s.password) for s in done.slots)]:
            assert mqtt_connack("127.0.0.1", port, user, password) == 0, user
        assert mqtt_connack("127.0.0.1", port, "dev-0", done.slots[1].password) == 5  # not authorized
        assert mqtt_connack("127.0.0.1", port, "dev-9", "anything") == 5


def test_init_cli_hands_the_tree_to_its_owners(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    me = f"{os.getuid()}:{os.getgid()}"
    assert main(["provision", "init", "--root", str(tmp_path), "--slots", "2", "--acl",
                 str(ROOT / "mosquitto" / "acl"), "--prefix", "acme", "--owner", me, "--broker-owner", me]) == 0
    assert "pattern write acme/%u/anomaly" in (tmp_path / "broker" / "acl").read_text()
    assert all(p.stat().st_uid == os.getuid() for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit):
        main(["provision", "init", "--root", str(tmp_path), "--owner", "fleetloop"])
    assert "expected UID:GID" in capsys.readouterr().err


def test_register_model_registers_once_and_signs_the_agents_copy(tmp_path: Path, initial_model_dir: Path) -> None:
    provision(tmp_path / "p", slots=1)
    model = tmp_path / "models" / "v1"
    shutil.copytree(initial_model_dir, model)
    settings = HubSettings(dev_mode=True, data_dir=tmp_path / "hub",
                           signing_key_file=tmp_path / "p" / "hub" / "model-signing.pem")
    assert register_model(settings, model) == "v1"
    verifier = verifier_from_key(str(tmp_path / "p" / "devices" / "model-signing.pub"))
    assert read_version(model, verifier)[0].version == "v1"  # what an agent pinning the key installs
    assert read_version(tmp_path / "hub" / "models" / "v1", verifier)[0].version == "v1"  # what the hub serves
    signature = (model / "manifest.sig").read_bytes()
    assert register_model(settings, model) == "v1"  # again: nothing new, the same signature
    assert (model / "manifest.sig").read_bytes() == signature

    manifest = json.loads((model / "manifest.json").read_text())
    manifest["created"] = "2000-01-01T00:00:00Z"  # a rebuilt v1 is another model under the same version
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="already has a different v1"):
        register_model(settings, model)

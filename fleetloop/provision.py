"""`fleetloop provision`: identities for a fleet on one host (docker compose), created once and reused.

`provision(root, slots=N)` fills a directory tree and creates only what is missing, so it can run on
every ``docker compose up``:

    ca/mqtt-ca.crt, ca/mqtt-ca.key   the private CA of the broker's TLS listener (created once, never replaced;
                                     its key is for no running service: only `provision` mounts ca/)
    broker/mosquitto.conf            mosquitto/mosquitto.conf rendered with its listener on TLS (8883) -> mosquitto
    broker/server.crt, server.key    the broker's TLS certificate for the --tls-host names and localhost
    broker/passwd, broker/acl        the broker's password file (hashes only) and rendered ACL
    broker/probe.password            the healthcheck user (may read $SYS/broker/uptime, nothing else)
    {broker,hub,sim,devices}/mqtt-ca.crt   the CA certificate every MQTT client verifies the broker against
    hub/secrets.toml                 the hub's MQTT password, as a settings file for ``--config``
    hub/tokens.json                  API tokens: one operator, one technician, one viewer
    hub/model-signing.pem (+ .pub)   the hub's Ed25519 model signing key
    sim/mqtt_password                the simulator's password (it publishes sensors/<device>/readings)
    devices/model-signing.pub        the public key every agent pins
    devices/slots/<id>/              one device identity: mqtt_password and slot.json (site, asset type)
    postgres/password                with --postgres-host: the database password (the postgres service reads it
                                     as POSTGRES_PASSWORD_FILE); hub/secrets.toml then also holds the hub's
                                     store_url (postgresql://fleetloop:…@HOST:5432/fleetloop)

Each top-level directory is meant to be a volume of its own, so a container sees only the secrets it
needs. A password or key, once written, is never replaced; the password file and the ACL are rewritten
only when they no longer match (a new slot, an edited ACL), the server certificate when it is missing, for
other names or about to expire. Agents claim slots with `fleetloop.claim`.
Hashing and ACL rendering are the dev broker's (`fleetloop.devbroker`), so both write the same files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetloop.devbroker import (
    HUB_USER,
    find_config_dir,
    new_password,
    passwd_line,
    password_matches,
    render_acl,
    render_tls_config,
    write_private,
)
from shared.errors import ConfigError, FleetloopError, TopicError
from shared.topics import DEFAULT_PREFIX, validate_device_id

log = logging.getLogger(__name__)

SIM_USER = "sim"  # mosquitto/acl: may only publish sensors/+/readings
PROBE_USER = "probe"  # mosquitto/acl: may only read $SYS/broker/uptime (the compose healthcheck)
SERVICE_USERS = (HUB_USER, SIM_USER, PROBE_USER)

BROKER, HUB, SIM, DEVICES, CA_DIR, POSTGRES = "broker", "hub", "sim", "devices", "ca", "postgres"
POSTGRES_USER = POSTGRES_DB = "fleetloop"  # the postgres service's POSTGRES_USER and POSTGRES_DB
POSTGRES_PORT = 5432
CA_CERT_FILE, CA_KEY_FILE = "mqtt-ca.crt", "mqtt-ca.key"
SERVER_CERT_FILE, SERVER_KEY_FILE, BROKER_CONF_FILE = "server.crt", "server.key", "mosquitto.conf"
TLS_PORT = 8883
TLS_LOCAL_HOST = "localhost"  # always in the server certificate: the broker's healthcheck connects to it
PASSWD_FILE, ACL_FILE, PROBE_PASSWORD_FILE = "passwd", "acl", "probe.password"
HUB_SECRETS_FILE, TOKENS_FILE, SIGNING_KEY_FILE = "secrets.toml", "tokens.json", "model-signing.pem"
PASSWORD_FILE, PUBLIC_KEY_FILE, SLOTS_DIR, SLOT_FILE = "mqtt_password", "model-signing.pub", "slots", "slot.json"
TOKEN_ROLES = ("operator", "technician", "viewer")
DEFAULT_SLOTS = 32

Owner = tuple[int, int]


@dataclass(frozen=True)
class Slot:
    """One provisioned device identity (a directory under ``devices/slots``)."""

    device_id: str
    index: int
    site: str
    asset_type: str
    path: Path

    @property
    def password(self) -> str:
        return _read_secret(self.path / PASSWORD_FILE)


def read_slots(devices_dir: Path) -> list[Slot]:
    """Every slot under `devices_dir`, in index order; ConfigError for a slot that is not complete."""
    slots = []
    root = devices_dir / SLOTS_DIR
    for path in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            meta = json.loads((path / SLOT_FILE).read_text())
            slot = Slot(validate_device_id(str(meta["device_id"])), int(meta["index"]), str(meta["site"]),
                        str(meta["asset_type"]), path)
        except (OSError, ValueError, KeyError, TypeError, TopicError) as exc:
            raise ConfigError(f"{path} is not a provisioned device slot ({exc}): run `fleetloop provision init` "
                              "again, or remove the directory") from None
        if slot.device_id != path.name or not (path / PASSWORD_FILE).is_file():
            raise ConfigError(f"{path} is not a provisioned device slot: run `fleetloop provision init` again")
        slots.append(slot)
    return sorted(slots, key=lambda s: (s.index, s.device_id))


@dataclass(frozen=True)
class Provisioned:
    """What one `provision` run found and did."""

    slots: list[Slot]
    created: list[str]  # paths (relative to the root) written for the first time or rewritten


def provision(
    root: Path,
    *,
    slots: int = DEFAULT_SLOTS,
    acl: Path | None = None,
    prefix: str = DEFAULT_PREFIX,
    owner: Owner | None = None,
    broker_owner: Owner | None = None,
    conf: Path | None = None,
    tls_hosts: tuple[str, ...] = (),
    postgres_host: str | None = None,
    postgres_owner: Owner | None = None,
) -> Provisioned:
    """Create what is missing under `root` (layout in the module docstring) and return what exists.

    Device ids and cohorts are `fleetloop.fleet.plan_fleet`'s (``dev-0`` …), the same the simulator uses.
    Slots already on disk beyond `slots` are kept: an identity is only retired by removing its directory.
    `owner` / `broker_owner` (uid, gid) are applied to every file, so a root provisioning container can
    hand each volume to the user that reads it (ca/ keeps the provisioning user's). `conf` is the broker config
    to render (default: the repository's mosquitto/mosquitto.conf); `tls_hosts` are the names clients reach the
    broker by (``localhost`` is always added).
    """
    from fleetloop.fleet import plan_fleet

    if slots < 1:
        raise ConfigError("--slots must be at least 1")
    created: list[str] = []
    for name in (CA_DIR, BROKER, HUB, SIM, DEVICES):
        (root / name).mkdir(mode=0o700, parents=True, exist_ok=True)

    hub_secrets = root / HUB / HUB_SECRETS_FILE
    if not hub_secrets.exists():
        write_private(hub_secrets, "# Written by `fleetloop provision`: the hub's broker password (use with "
                                   f"--config).\nmqtt_password = \"{new_password()}\"\n")
        created.append(f"{HUB}/{HUB_SECRETS_FILE}")
    if postgres_host is not None:
        _ensure_store_url(root, postgres_host, created)
    passwords = {HUB_USER: _hub_password(hub_secrets),
                 SIM_USER: _ensure_secret(root, f"{SIM}/{PASSWORD_FILE}", created),
                 PROBE_USER: _ensure_secret(root, f"{BROKER}/{PROBE_PASSWORD_FILE}", created)}

    for index, spec in enumerate(plan_fleet(slots, seed=0)):
        path = root / DEVICES / SLOTS_DIR / spec.device_id
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _ensure_secret(root, f"{DEVICES}/{SLOTS_DIR}/{spec.device_id}/{PASSWORD_FILE}", created)
        if not (path / SLOT_FILE).exists():
            meta = {"device_id": spec.device_id, "index": index,
                    "site": spec.machine.site, "asset_type": spec.machine.asset_type}
            write_private(path / SLOT_FILE, json.dumps(meta) + "\n")
            created.append(f"{DEVICES}/{SLOTS_DIR}/{spec.device_id}/{SLOT_FILE}")
    found = read_slots(root / DEVICES)
    clash = sorted({s.device_id for s in found} & set(SERVICE_USERS))
    if clash:
        raise ConfigError(f"device slot(s) {', '.join(clash)} use a service username: remove them")
    passwords.update({s.device_id: s.password for s in found})

    tokens = root / HUB / TOKENS_FILE
    if not tokens.exists():
        write_private(tokens, json.dumps({secrets.token_urlsafe(32): role for role in TOKEN_ROLES}, indent=2) + "\n")
        created.append(f"{HUB}/{TOKENS_FILE}")
    _ensure_signing_key(root, created)

    if _write_if_changed(root / BROKER / PASSWD_FILE, _passwd(root / BROKER / PASSWD_FILE, passwords)):
        created.append(f"{BROKER}/{PASSWD_FILE}")
    acl_text = render_acl((acl or find_config_dir() / "acl").read_text(), prefix)
    if _write_if_changed(root / BROKER / ACL_FILE, acl_text):
        created.append(f"{BROKER}/{ACL_FILE}")
    conf_text = (conf or find_config_dir() / BROKER_CONF_FILE).read_text()
    _ensure_tls(root, tls_hosts, created)
    if _write_if_changed(root / BROKER / BROKER_CONF_FILE, render_broker_config(conf_text)):
        created.append(f"{BROKER}/{BROKER_CONF_FILE}")

    for name, who in ((BROKER, broker_owner), (HUB, owner), (SIM, owner), (DEVICES, owner),
                      (POSTGRES, postgres_owner)):
        if who is not None and (root / name).is_dir():
            _chown_tree(root / name, who)
    return Provisioned(found, created)


def _read_secret(path: Path) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{path} is empty: remove it and run `fleetloop provision init` again")
    return value


def _ensure_secret(root: Path, relative: str, created: list[str]) -> str:
    path = root / relative
    if not path.exists():
        write_private(path, new_password() + "\n")
        created.append(relative)
    return _read_secret(path)


def _ensure_store_url(root: Path, host: str, created: list[str]) -> None:
    """The database password (made once) and, in the hub's secrets file, the store_url that uses it."""
    (root / POSTGRES).mkdir(mode=0o700, exist_ok=True)
    password = _ensure_secret(root, f"{POSTGRES}/password", created)
    path = root / HUB / HUB_SECRETS_FILE
    url = f"postgresql://{POSTGRES_USER}:{password}@{host}:{POSTGRES_PORT}/{POSTGRES_DB}"
    try:
        current = tomllib.loads(path.read_text()).get("store_url")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if current == url:
        return
    if current is not None:
        raise ConfigError(f"{path} has a store_url for another database than {host}'s: remove that line and run "
                          "`fleetloop provision init` again")
    write_private(path, path.read_text().rstrip("\n") + f"\n# the hub's PostgreSQL store (--postgres-host {host})\n"
                  f"store_url = \"{url}\"\n")
    created.append(f"{HUB}/{HUB_SECRETS_FILE}")


def _hub_password(path: Path) -> str:
    try:
        value = tomllib.loads(path.read_text()).get("mqtt_password")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the hub's mqtt_password from {path}: {exc}") from None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path} has no mqtt_password: remove it and run `fleetloop provision init` again")
    return value


def _ensure_signing_key(root: Path, created: list[str]) -> None:
    """The hub's signing key (never replaced) and the public key the agents pin, copied for them."""
    from hub.registry.signing import SigningKey

    key_path = root / HUB / SIGNING_KEY_FILE
    if key_path.exists():
        key = SigningKey.load(key_path, dev_mode=False)
    else:
        key = SigningKey.create(key_path)
        created.append(f"{HUB}/{SIGNING_KEY_FILE}")
    public = root / DEVICES / PUBLIC_KEY_FILE
    pem = key.public_key_pem().decode()
    if _write_if_changed(public, pem):
        public.chmod(0o644)  # not a secret
        created.append(f"{DEVICES}/{PUBLIC_KEY_FILE}")


def _ensure_tls(root: Path, tls_hosts: tuple[str, ...], created: list[str]) -> None:
    """The CA (created once, never replaced), the broker's certificate (reissued when it no longer fits) and a copy
    of the CA certificate for the broker and every client."""
    from fleetloop.tls import issue_server_cert, load_ca, needs_server_cert, new_ca

    ca_cert, ca_key = root / CA_DIR / CA_CERT_FILE, root / CA_DIR / CA_KEY_FILE
    if not ca_cert.exists() and not ca_key.exists():
        cert_pem, key_pem = new_ca()
        write_private(ca_key, key_pem.decode())
        write_private(ca_cert, cert_pem.decode())
        created += [f"{CA_DIR}/{CA_KEY_FILE}", f"{CA_DIR}/{CA_CERT_FILE}"]
    ca = load_ca(ca_cert, ca_key)  # one of the two lost is an error, never a new CA: every client pins it
    hosts = list(dict.fromkeys([*tls_hosts, TLS_LOCAL_HOST]))
    server_cert, server_key = root / BROKER / SERVER_CERT_FILE, root / BROKER / SERVER_KEY_FILE
    if needs_server_cert(ca, server_cert, server_key, hosts):
        cert_pem, key_pem = issue_server_cert(ca, hosts)
        write_private(server_key, key_pem.decode())
        write_private(server_cert, cert_pem.decode())
        created += [f"{BROKER}/{SERVER_KEY_FILE}", f"{BROKER}/{SERVER_CERT_FILE}"]
    for name in (BROKER, HUB, SIM, DEVICES):
        if _write_if_changed(root / name / CA_CERT_FILE, ca.pem.decode()):
            (root / name / CA_CERT_FILE).chmod(0o644)  # not a secret
            created.append(f"{name}/{CA_CERT_FILE}")


def render_broker_config(conf: str) -> str:
    """`conf` with its listener on TLS, the TLS files beside the password file (the broker volume's mount point)."""
    lines = [line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    password_file = next((parts[1].strip() for parts in lines if parts[0] == "password_file" and len(parts) == 2), "")
    if not password_file.startswith("/"):
        raise ConfigError("the broker config has no absolute password_file: the TLS files go beside it")
    where = password_file.rsplit("/", 1)[0]
    return render_tls_config(conf, port=TLS_PORT, cafile=f"{where}/{CA_CERT_FILE}",
                             certfile=f"{where}/{SERVER_CERT_FILE}", keyfile=f"{where}/{SERVER_KEY_FILE}")


def _passwd(path: Path, passwords: dict[str, str]) -> str:
    """The password file for `passwords`, keeping each existing line whose hash still matches."""
    existing: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            user, sep, hashed = line.partition(":")
            if sep:
                existing[user] = hashed
    lines = []
    for user, password in passwords.items():
        kept = existing.get(user)
        lines.append(f"{user}:{kept}" if kept and password_matches(kept, password) else passwd_line(user, password))
    return "".join(f"{line}\n" for line in lines)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    write_private(path, text)
    return True


def _chown_tree(path: Path, owner: Owner) -> None:
    uid, gid = owner
    os.chown(path, uid, gid)
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


# --- registering the initial model with the hub --------------------------------------------------------------


def register_model(settings: Any, model_dir: Path, *, status: str = "active") -> str:
    """Register `model_dir` with the hub (signed) unless its version is registered, then sign it in place.

    The signature in `model_dir` lets agents that install it as their initial model verify it with the
    pinned key. A registered version whose manifest differs from `model_dir`'s is refused: the two would
    be different models under one version. Returns the version. `settings` is a HubSettings.
    """
    from hub.app.wiring import build_services
    from models.version import read_version
    from shared.manifest import MANIFEST_FILE

    manifest, _ = read_version(model_dir)
    services = build_services(settings, mqtt=False, training=False)
    store, registry, key = services.store, services.registry, services.key
    assert registry is not None and key is not None
    try:
        if store.model_version(manifest.version) is None:
            registry.register(model_dir, actor="provision", reason="initial model", status=status)
            log.info("registered %s as %s", manifest.version, status)
        elif (registry.path(manifest.version) / MANIFEST_FILE).read_bytes() != (model_dir / MANIFEST_FILE).read_bytes():
            raise ConfigError(f"the hub already has a different {manifest.version}: {model_dir} was rebuilt since it "
                              "was registered; remove one of them (the models volume or the hub data)")
        else:
            log.info("%s is registered already", manifest.version)
        key.sign_version(model_dir)
    finally:
        store.close()
    return manifest.version


# --- `fleetloop provision …` ---------------------------------------------------------------------------------


def _owner(text: str) -> Owner:
    uid, sep, gid = text.partition(":")
    if not (uid.isdigit() and (not sep or gid.isdigit())):
        raise argparse.ArgumentTypeError(f"expected UID:GID (numbers), got {text!r}")
    return int(uid), int(gid or uid)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Identities for a fleet on one host (docker compose): broker credentials, hub "
        "secrets and a pool of device slots, which agents claim when they start.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser(
        "init", help="create (only what is missing) broker credentials and TLS, hub secrets and device slots",
        description="Create, under ROOT, the broker's password file and ACL, the hub's MQTT password, API "
        "tokens and signing key, the simulator's password, N device slots (dev-0 …), each with a random "
        "password, a private CA with the broker's TLS certificate, and the broker's config with a TLS listener. "
        "Existing secrets are kept (the CA is never replaced); run it again to add slots.")
    init.add_argument("--root", type=Path, required=True, metavar="DIR", help="where to write (ca/, broker/, "
                      "hub/, sim/, devices/)")
    init.add_argument("--slots", type=int, default=DEFAULT_SLOTS, metavar="N",
                      help="device slots, i.e. how many agents can run (default %(default)s)")
    init.add_argument("--acl", type=Path, metavar="FILE", help="the ACL to install (default: the repository's "
                      "mosquitto/acl)")
    init.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default: %(default)s)")
    init.add_argument("--owner", type=_owner, metavar="UID:GID", help="owner of hub/, sim/ and devices/ "
                      "(default: unchanged)")
    init.add_argument("--broker-owner", type=_owner, metavar="UID:GID",
                      help="owner of broker/: the uid mosquitto runs as (1883 in the official image)")
    init.add_argument("--conf", type=Path, metavar="FILE", help="the broker config to render with a TLS listener on "
                      f"{TLS_PORT} into broker/{BROKER_CONF_FILE} (default: the repository's mosquitto/mosquitto.conf)")
    init.add_argument("--tls-host", action="append", default=[], metavar="NAME", dest="tls_hosts",
                      help="a name (or IP address) clients reach the broker by, for its TLS certificate; repeat it "
                      f"for several ({TLS_LOCAL_HOST} is always included)")
    init.add_argument("--postgres-host", metavar="NAME", help="the hub's store is PostgreSQL on this host: make "
                      f"the database password ({POSTGRES}/password, for the postgres service) and write the hub's "
                      f"store_url into {HUB}/{HUB_SECRETS_FILE}")
    init.add_argument("--postgres-owner", type=_owner, metavar="UID:GID",
                      help=f"owner of {POSTGRES}/: the uid PostgreSQL runs as (999 in the official image)")

    claim = sub.add_parser(
        "claim-and-run", help="claim a free device slot for this host and run `fleetloop agent run` as that device",
        description="Claim a device slot (the one this host had before if it is free, else the first free one), "
        "hold it while the agent runs, and run `fleetloop agent run` with the slot's device id, password, site "
        "and asset type in FLEETLOOP_AGENT_* variables and its data in DATA_ROOT/<device id>.")
    claim.add_argument("--devices-dir", type=Path, required=True, metavar="DIR",
                       help="the devices/ directory written by `fleetloop provision init`")
    claim.add_argument("--data-root", type=Path, required=True, metavar="DIR",
                       help="each device's data dir is DIR/<device id>, so a device keeps its database and outbox")
    claim.add_argument("--holder", help="who claims (default: this host's name; a container's id under docker)")
    claim.add_argument("--source-topic", metavar="TEMPLATE",
                       help="MQTT source topic with {device_id} replaced, e.g. sensors/{device_id}/readings")
    claim.add_argument("agent_args", nargs=argparse.REMAINDER,
                       help="further `fleetloop agent run` options, after --")

    reg = sub.add_parser(
        "register-model", help="register a model version as the hub's active model unless it is, and sign it",
        description="Register DIR with the hub's model registry (signed with the hub's key) unless its version "
        "is registered already, then write its signature into DIR, so agents that install DIR as their "
        "initial model can verify it with the pinned public key. Hub settings come from FLEETLOOP_HUB_* and "
        "--config.")
    reg.add_argument("dir", type=Path, metavar="DIR", help="a model version directory")
    reg.add_argument("--config", type=Path, help="hub settings file (TOML or JSON)")
    reg.add_argument("--status", default="active", help="registry status if registered now (default %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "init":
        return _init(args)
    if args.command == "claim-and-run":
        return _claim_and_run(args)
    return _register(args)


def _init(args: argparse.Namespace) -> int:
    done = provision(args.root, slots=args.slots, acl=args.acl, prefix=args.prefix, owner=args.owner,
                     broker_owner=args.broker_owner, conf=args.conf, tls_hosts=tuple(args.tls_hosts),
                     postgres_host=args.postgres_host, postgres_owner=args.postgres_owner)
    for path in done.created:
        log.info("wrote %s", args.root / path)
    log.info("%d device slots in %s (%s)", len(done.slots), args.root / DEVICES,
             f"{len(done.created)} files written" if done.created else "nothing to do")
    return 0


def _claim_and_run(args: argparse.Namespace) -> int:
    from agent import cli as agent_cli
    from fleetloop.claim import agent_environment, claim_slot

    extra = args.agent_args[1:] if args.agent_args[:1] == ["--"] else args.agent_args
    agent_args = agent_cli.build_parser("fleetloop agent").parse_args(["run", *extra])
    with claim_slot(args.devices_dir, holder=args.holder or socket.gethostname()) as claim:
        log.info("%s claimed device slot %s (%s)", claim.holder, claim.slot.device_id, claim.slot.path)
        os.environ.update(agent_environment(claim.slot, args.data_root, source_topic=args.source_topic))
        return int(agent_cli.run(agent_args) or 0)


def _register(args: argparse.Namespace) -> int:
    try:
        from hub.app.settings import HubSettings
    except ImportError as exc:
        raise FleetloopError(f"'fleetloop provision register-model' needs the hub extra ({exc.name} is not "
                             "installed): pip install 'fleetloop[hub]'") from None
    version = register_model(HubSettings.load(args.config), args.dir, status=args.status)
    print(f"{version} registered and signed in {args.dir}")
    return 0

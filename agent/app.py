"""Wiring: build an agent (database, model store, source, MQTT link) from AgentSettings."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from agent.db import PRIORITY_ANNOTATION, AgentDB, OutboxMessage
from agent.link import Link
from agent.models.store import ModelStore
from agent.runtime import Agent
from agent.settings import AgentSettings, SourceSettings
from agent.sources.base import SensorSource
from infra.versions import ManifestVerifier
from shared.codec import encode
from shared.errors import ConfigError
from shared.messages import Annotation
from shared.topics import Kind, Topics

log = logging.getLogger(__name__)


def build_source(agent_settings: AgentSettings) -> SensorSource:
    """The sensor source the settings describe (imports only the one it needs)."""
    settings: SourceSettings = agent_settings.source
    device_id = agent_settings.device_id
    if settings.kind == "sim":
        from agent.sources.sim import SimSource

        return SimSource(device_id, seed=settings.seed, rate=settings.rate, config=settings.sim_config,
                         limit=settings.limit, drifts=settings.drifts, start_ts=settings.start_ts)
    if settings.kind == "cmapss":
        from agent.sources.replay import CmapssSource

        assert settings.path is not None
        return CmapssSource(settings.path, units=settings.units, rate=settings.rate, start_ts=settings.start_ts,
                            hold_path=settings.hold_path)
    if settings.kind == "csv":
        from agent.sources.replay import CsvSource

        assert settings.path is not None
        kwargs = {"time_column": settings.time_column} if settings.time_column else {}
        return CsvSource(settings.path, sensors=settings.sensors, rate=settings.rate, **kwargs)
    from agent.sources.mqtt import MqttSource

    assert settings.topic is not None
    if not settings.sensors:
        raise ConfigError("source kind 'mqtt' needs source.sensors (the names in each payload's values)")
    password = agent_settings.mqtt_password
    return MqttSource(
        agent_settings.mqtt_host, agent_settings.mqtt_port, settings.topic, settings.sensors,
        username=agent_settings.username, password=password.get_secret_value() if password else None,
        client_id=f"{device_id}-source",
        tls_ca=str(agent_settings.mqtt_tls_ca) if agent_settings.mqtt_tls_ca else None,  # the link's broker and CA
    )


def model_verifier(settings: AgentSettings) -> ManifestVerifier | None:
    """The verifier for the pinned model-signing key; without a key only dev mode may start (unsigned)."""
    value = settings.model_public_key
    if value is None or not value.strip():
        if not settings.dev_mode:
            raise ConfigError(
                "no pinned model signing key: set FLEETLOOP_AGENT_MODEL_PUBLIC_KEY (or model_public_key in the "
                "config file) to the hub's public key file or its base64 text (`python -m hub.registry.signing pubkey "
                "KEY`); only dev_mode=true may serve unsigned models"
            )
        log.warning("dev mode without model_public_key: model signatures are NOT checked")
        return None
    return verifier_from_key(value)


def verifier_from_key(value: str) -> ManifestVerifier:
    """A verifier for a pinned public key given as a file path, PEM text or base64 of the raw key."""
    from shared.signing import Ed25519Verifier, public_key_from_text  # cryptography: ~10 MB, only with a key

    text = value.strip()
    path = Path(text).expanduser()
    if not text.startswith("-----BEGIN") and path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read model_public_key {path}: {exc.strerror}") from None
        return Ed25519Verifier(public_key_from_text(data, source=f"model_public_key file {path}"))
    try:
        return Ed25519Verifier(public_key_from_text(text, source="model_public_key"))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (and it is not an existing file)") from None


def build_agent(settings: AgentSettings, source: SensorSource | None = None, *, connect: bool = True) -> Agent:
    verifier = model_verifier(settings)  # before anything is created: a refused start leaves no trace
    db = AgentDB(settings.db_path)
    store = ModelStore(settings.model_dir, db, verifier=verifier)
    src = source if source is not None else build_source(settings)
    link = None
    if connect:
        link = Link(
            device_id=settings.device_id,
            topics=Topics(settings.prefix),
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            username=settings.username,
            password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
            keepalive=settings.mqtt_keepalive,
            tls_ca=str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None,
            wire_format=settings.wire_format,
        )
    agent = Agent(settings, src, db, store, link)
    if link is not None:
        link.status_fields = agent.status_fields
    return agent


def record_annotation(db: AgentDB, topics: Topics, annotation: Annotation) -> None:
    """Store a technician's annotation locally and queue it for the hub (one transaction)."""
    row: dict[str, Any] = {name: getattr(annotation, name) for name in (
        "annotation_id", "trace_id", "start_ts", "end_ts", "label", "fault_type", "technician_id", "confidence",
        "signal", "note")}
    row["created"] = time.time()
    message = OutboxMessage(
        annotation.msg_id, topics.topic(annotation.device_id, Kind.ANNOTATION), encode(annotation),
        PRIORITY_ANNOTATION,
    )
    db.add_annotation(row, message)

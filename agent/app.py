"""Wiring: build an agent (database, model store, source, MQTT link) from AgentSettings."""

from __future__ import annotations

import time

from agent.db import PRIORITY_ANNOTATION, AgentDB, OutboxMessage
from agent.link import Link
from agent.modelstore import ModelStore
from agent.runtime import Agent
from agent.settings import AgentSettings, SourceSettings
from agent.sources.base import SensorSource
from shared.codec import encode
from shared.errors import ConfigError
from shared.messages import Annotation
from shared.topics import Kind, Topics


def build_source(agent_settings: AgentSettings) -> SensorSource:
    """The sensor source the settings describe (imports only the one it needs)."""
    settings: SourceSettings = agent_settings.source
    device_id = agent_settings.device_id
    if settings.kind == "sim":
        from agent.sources.sim import SimSource

        return SimSource(device_id, seed=settings.seed, rate=settings.rate, config=settings.sim_config,
                         limit=settings.limit, drifts=settings.drifts)
    if settings.kind == "cmapss":
        from agent.sources.replay import CmapssSource

        assert settings.path is not None
        return CmapssSource(settings.path, units=settings.units, rate=settings.rate)
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
    )


def build_agent(settings: AgentSettings, source: SensorSource | None = None, *, connect: bool = True) -> Agent:
    db = AgentDB(settings.db_path)
    store = ModelStore(settings.model_dir, db)
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
        )
    agent = Agent(settings, src, db, store, link)
    if link is not None:
        link.status_fields = agent.status_fields
    return agent


def record_annotation(db: AgentDB, topics: Topics, annotation: Annotation) -> None:
    """Store a technician's annotation locally and queue it for the hub (one transaction)."""
    row = annotation.model_dump(
        include={"annotation_id", "trace_id", "start_ts", "end_ts", "label", "fault_type", "technician_id",
                 "confidence", "signal", "note"}
    )
    row["created"] = time.time()
    message = OutboxMessage(
        annotation.msg_id, topics.topic(annotation.device_id, Kind.ANNOTATION), encode(annotation),
        PRIORITY_ANNOTATION,
    )
    db.add_annotation(row, message)

"""`build_services`: the hub's object graph built once, with the parts each entry point leaves out; the CLI and the
API build through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from hub.api import create_app
from hub.app.service import HubService
from hub.app.settings import HubSettings
from hub.app.wiring import OfflinePublisher, Services, build_services
from hub.registry.signing import default_key_path
from shared.errors import ConfigError


def test_the_full_graph_shares_one_store_key_and_publisher(tmp_path: Path) -> None:
    settings = HubSettings(dev_mode=True, data_dir=tmp_path, artifact_base_url="http://hub.test/")
    services = build_services(settings)
    try:
        assert services.registry is not None and services.rollouts is not None and services.training is not None
        assert services.drift is not None and services.traces is not None and services.key is not None
        assert services.registry.key is services.key and services.registry.store is services.store
        assert services.rollouts.publisher is services.commands and services.rollouts.registry is services.registry
        assert services.training.store is services.store and services.drift.store is services.store
        assert default_key_path(tmp_path).is_file()  # dev mode makes the key on first start
        assert services.rollouts.artifact_url("v2") == "http://hub.test/models/v2/artifact"
        assert services.labels is settings.labels
    finally:
        services.close()


def test_store_only_commands_load_no_key(tmp_path: Path) -> None:
    services = build_services(HubSettings(dev_mode=True, data_dir=tmp_path), registry=False, mqtt=False)
    try:
        assert (services.key, services.registry, services.rollouts, services.training) == (None, None, None, None)
        assert (services.commands, services.traces) == (None, None)
        assert services.drift is not None
        assert not default_key_path(tmp_path).exists()
    finally:
        services.close()


def test_without_mqtt_rollouts_read_and_publish_nothing(tmp_path: Path) -> None:
    services = build_services(HubSettings(dev_mode=True, data_dir=tmp_path), mqtt=False, training=False)
    try:
        assert services.commands is None and services.training is None and services.rollouts is not None
        assert isinstance(services.rollouts.publisher, OfflinePublisher)
        assert services.rollouts.recent() == []
    finally:
        services.close()


def test_outside_dev_mode_the_key_must_exist(tmp_path: Path) -> None:
    settings = HubSettings(dev_mode=False, data_dir=tmp_path, mqtt_password=SecretStr("secret"),
                           tokens={"operator-token-0123456789abcdef": "operator"})
    with pytest.raises(ConfigError, match="signing_key_file"):
        build_services(settings, mqtt=False)


def test_the_hub_service_and_its_api_use_the_same_services(tmp_path: Path) -> None:
    service = HubService(HubSettings(dev_mode=True, data_dir=tmp_path))
    try:
        app = service.app()
        assert app.state.services is service.services
        assert service.registry is service.services.registry and service.store is service.services.store
    finally:
        service.store.close()


def test_create_app_takes_services_or_settings_and_parts(tmp_path: Path) -> None:
    services = build_services(HubSettings(dev_mode=True, data_dir=tmp_path), registry=False, mqtt=False)
    try:
        assert isinstance(create_app(services).state.services, Services)
        with pytest.raises(TypeError, match="no other parts"):
            create_app(services, clock=lambda: 0.0)
        wrapped = create_app(services.settings, services.store, clock=lambda: 5.0).state.services
        assert wrapped.store is services.store and wrapped.clock() == 5.0 and wrapped.registry is None
    finally:
        services.close()


def test_each_hub_process_has_its_own_command_publisher_client_id(tmp_path: Path) -> None:
    """`hub serve` and `hub ingest` workers beside it: one shared MQTT client id made the broker close one publisher
    each time another connected, so assignments waited ("not sent yet") while the processes took turns."""
    ids = []
    for worker in ("hub-ingest", "worker-1", "worker-2"):
        service = HubService(HubSettings(dev_mode=True, data_dir=tmp_path, ingest_client_id=worker))
        try:
            ids.append(service.commands.client._client_id.decode())
        finally:
            service.services.close()
    assert len(set(ids)) == 3 and ids[1] == "worker-1-commands"

"""The hub's side of a small e2e test: settings for the test broker, a SQLite store and a running ingest worker."""

from __future__ import annotations

from pathlib import Path

from fleetloop.devbroker import DevBroker
from hub.app.settings import HubSettings
from hub.mqtt.ingest import IngestWorker
from hub.mqtt.publisher import CommandPublisher
from hub.store import HubStore, open_store
from tests.fixtures.broker import HUB_USER, Clients, Collector, barrier_topic, subscribe


def hub_side(tmp_path: Path, broker: DevBroker, name: str) -> tuple[HubSettings, HubStore, IngestWorker]:
    """Hub settings on `broker`, a store under `tmp_path`, and an ingest worker (group and client id from `name`),
    started and subscribed."""
    settings = HubSettings(dev_mode=True, data_dir=tmp_path / "hub", mqtt_host=broker.host, mqtt_port=broker.port,
                           mqtt_password=broker.password(HUB_USER))
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER, password=broker.password(HUB_USER),
                          store=store, share_group=name, client_id=f"{name}-ingest")
    worker.start()
    assert worker.wait_ready(10)
    return settings, store, worker


def watched_commands(mqtt_clients: Clients, broker: DevBroker, settings: HubSettings,
                     device: str) -> tuple[Collector, str, CommandPublisher]:
    """A started hub command publisher, and a watcher of what the broker holds for `device`'s ``cmd`` topic as the
    hub sent it: (collector, barrier topic, publisher); `barrier(publisher.client, topic, collector)` reads it."""
    sent = Collector()
    watcher = mqtt_clients.connect(broker, HUB_USER, collector=sent)
    subscribe(watcher, f"{broker.prefix}/{device}/cmd")
    subscribe(watcher, marker := barrier_topic())
    commands = CommandPublisher(settings)
    commands.start()
    return sent, marker, commands

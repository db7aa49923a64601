"""The ingest share group is a secret no device can name: derived from the hub's MQTT password unless set."""

from __future__ import annotations

from pathlib import Path

from hub.app.settings import HubSettings
from hub.mqtt.ingest import IngestWorker
from hub.store.sqlite import SqliteHubStore


def _settings(tmp_path: Path, **kw: object) -> HubSettings:
    return HubSettings(mqtt_password="p" * 24, tokens={"t" * 32: "operator"}, data_dir=tmp_path, **kw)  # type: ignore[arg-type]


def test_the_default_group_is_derived_from_the_password_and_is_not_hub(tmp_path: Path) -> None:
    group = _settings(tmp_path).ingest_share_group
    assert group != "hub" and group.startswith("hub-") and len(group) == 36
    assert _settings(tmp_path).ingest_share_group == group  # every worker of one hub computes the same
    other = HubSettings(mqtt_password="q" * 24, tokens={"t" * 32: "operator"}, data_dir=tmp_path)  # type: ignore[arg-type]
    assert other.ingest_share_group != group
    assert _settings(tmp_path, share_group="chosen").ingest_share_group == "chosen"
    assert HubSettings(dev_mode=True, data_dir=tmp_path).ingest_share_group == "hub"


def test_the_worker_uses_it_and_its_client_id_does_not_reveal_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = SqliteHubStore(tmp_path / "hub.db")
    worker = IngestWorker.from_settings(settings, store)
    assert worker.share_group == settings.ingest_share_group
    assert all(f.startswith(f"$share/{settings.ingest_share_group}/") for f in worker.session.filters()[:-1])
    assert settings.ingest_share_group not in worker.client_id
    store.close()

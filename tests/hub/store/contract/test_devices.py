"""The device registry: presence follows device time and the last will; any message registers a device."""

from __future__ import annotations

from hub.store.ports import HubStore
from tests.hub.store.messages import anomaly, rec, stats, status


def test_presence_follows_device_time_and_the_last_will(store: HubStore) -> None:
    def state() -> tuple[bool, float | None]:
        device = store.device("dev-2")
        assert device is not None
        return device.online, device.status_ts

    store.ingest_batch([rec(status("dev-2", "online", 100.0, agent_version="1.0", site="plant-a",
                                   asset_type="pump", model_version="v1"), at=1000.0)])
    assert state() == (True, 100.0)
    # The last will was set at connect (ts 90) and published by the broker when the link died: it wins.
    result = store.ingest_batch([rec(status("dev-2", "offline", 90.0), at=1001.0)])
    assert result.status_applied == 1 and state() == (False, 100.0)
    # A redelivered online (same ts) and a delayed older online must not bring it back.
    result = store.ingest_batch([rec(status("dev-2", "online", 100.0), at=1002.0),
                                 rec(status("dev-2", "online", 95.0), at=1003.0)])
    assert (result.status_applied, result.status_ignored) == (0, 2) and state() == (False, 100.0)
    # A new session.
    store.ingest_batch([rec(status("dev-2", "online", 200.0, agent_version="1.1"), at=1100.0)])
    assert state() == (True, 200.0)
    # An older session's will that arrived before that online but was written late (another worker).
    store.ingest_batch([rec(status("dev-2", "offline", 150.0), at=1099.0)])
    assert state() == (True, 200.0)

    device = store.device("dev-2")
    assert device is not None
    # A will names nothing: the descriptive fields keep their values; cohort falls back to the site.
    assert (device.agent_version, device.site, device.asset_type, device.model_version, device.cohort) == (
        "1.1", "plant-a", "pump", "v1", "plant-a")
    store.set_cohort("dev-2", "canary")
    assert store.device("dev-2").cohort == "canary"  # type: ignore[union-attr]
    assert (store.counts().devices, store.counts().devices_online) == (1, 1)


def test_any_message_registers_the_device_and_its_activity(store: HubStore) -> None:
    store.ingest_batch([rec(anomaly("dev-5", ts=50.0), at=500.0), rec(stats("dev-5", period_end=40.0), at=400.0)])
    [device] = store.devices()
    assert (device.device_id, device.online, device.last_seen, device.last_ts, device.first_seen) == (
        "dev-5", False, 500.0, 50.0, 500.0)
    store.ingest_batch([rec(anomaly("dev-5", ts=10.0), at=450.0)])  # older on both clocks: nothing goes back
    assert (store.devices()[0].last_seen, store.devices()[0].last_ts) == (500.0, 50.0)

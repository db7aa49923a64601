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


def test_the_fleet_is_read_a_page_at_a_time_with_the_whole_filtered_fleet_counted(store: HubStore) -> None:
    from hub.store.rows import FleetQuery, IncidentRow

    fleet = [("dev-1", "plant-a", "pump", "v1", "online"), ("dev-2", "plant-a", "fan", "v2", "offline"),
             ("dev-3", "plant-b", "pump", "v1", "online"), ("dev-4", "plant-a", "pump", None, "online"),
             ("dev-5", None, None, "v1", "offline")]
    store.ingest_batch([rec(status(d, state, 100.0, site=site, asset_type=asset, model_version=version), at=1000.0)
                        for d, site, asset, version, state in fleet])
    for n, (device, state) in enumerate([("dev-1", "open"), ("dev-1", "acknowledged"), ("dev-4", "open"),
                                         ("dev-3", "open"), ("dev-1", "resolved")]):
        assert store.write_incident(IncidentRow(f"inc-{n}", device, None, "alarm", state, 100.0 + n, 101.0 + n, 3,
                                                0.9, "v1", 1000.0, 1000.0))

    first = store.fleet(FleetQuery(site="plant-a", limit=2))
    assert [d.device_id for d in first.devices] == ["dev-1", "dev-2"]
    assert (first.total, first.online, first.open_total) == (3, 2, 3)  # resolved and plant-b's are not open here
    assert first.open_incidents == {"dev-1": 2}
    assert first.versions == [(None, 1), ("v1", 1), ("v2", 1)]  # equal counts: by version, none first
    assert (first.sites, first.asset_types) == (["plant-a", "plant-b"], ["fan", "pump"])  # the whole fleet's
    second = store.fleet(FleetQuery(site="plant-a", limit=2, offset=2))
    assert [d.device_id for d in second.devices] == ["dev-4"] and second.open_incidents == {"dev-4": 1}

    pumps = store.fleet(FleetQuery(site="plant-a", asset_type="pump"))
    assert [d.device_id for d in pumps.devices] == ["dev-1", "dev-4"] and pumps.total == 2
    everything = store.fleet(FleetQuery())
    assert (everything.total, everything.online, everything.open_total) == (5, 3, 4)
    assert everything.versions[0] == ("v1", 3)
    assert store.fleet(FleetQuery(site="nowhere")).devices == []

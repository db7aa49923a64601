"""The device registry on PostgreSQL: presence and versions (written by ingest) and explicit cohorts."""

from __future__ import annotations

from hub.store.postgres.connection import PostgresConnection, Row
from hub.store.rows import Device, FleetPage, FleetQuery
from hub.store.sqlite.devices import read_fleet

_DEVICE_COLUMNS = (
    "device_id, online, last_seen, model_version, agent_version, site, asset_type, coalesce(cohort, site), "
    "shadow_version, status_ts, last_ts, first_seen"
)


class DeviceQueries(PostgresConnection):
    """`DeviceStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def devices(self) -> list[Device]:
        return [_device(r) for r in self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id")]

    def device(self, device_id: str) -> Device | None:
        rows = self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = %s", [device_id])
        return _device(rows[0]) if rows else None

    def fleet(self, query: FleetQuery) -> FleetPage:
        return read_fleet(self._read, query, mark="%s", decode=_device)

    def set_cohort(self, device_id: str, cohort: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO devices (device_id, online, cohort) VALUES (%s, 0, %s) "
                "ON CONFLICT (device_id) DO UPDATE SET cohort = excluded.cohort",
                (device_id, cohort),
            )


def _device(r: Row) -> Device:
    return Device(
        device_id=r[0], online=bool(r[1]), last_seen=r[2], model_version=r[3], agent_version=r[4], site=r[5],
        asset_type=r[6], cohort=r[7], shadow_version=r[8], status_ts=r[9], last_ts=r[10], first_seen=r[11],
    )

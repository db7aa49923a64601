"""The device registry on SQLite: presence and versions (written by ingest) and explicit cohorts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from hub.store.rows import Device, FleetPage, FleetQuery
from hub.store.sqlite.connection import SqliteConnection

_DEVICE_COLUMNS = (
    "device_id, online, last_seen, model_version, agent_version, site, asset_type, coalesce(cohort, site), "
    "shadow_version, status_ts, last_ts, first_seen"
)


class DeviceQueries(SqliteConnection):
    """`DeviceStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def devices(self) -> list[Device]:
        return [_device(r) for r in self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id")]

    def device(self, device_id: str) -> Device | None:
        rows = self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", [device_id])
        return _device(rows[0]) if rows else None

    def fleet(self, query: FleetQuery) -> FleetPage:
        return read_fleet(self._read, query, mark="?", decode=_device)

    def set_cohort(self, device_id: str, cohort: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO devices (device_id, online, cohort) VALUES (?, 0, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET cohort = excluded.cohort",
                (device_id, cohort),
            )


_OPEN = "i.state IN ('open', 'acknowledged')"


def read_fleet(read: Callable[[str, Sequence[Any]], Sequence[Any]], query: FleetQuery, *, mark: str,
               decode: Callable[[Any], Device]) -> FleetPage:
    """`DeviceStore.fleet` in SQL both backends speak (`mark`: their placeholder): one page of rows, the rest
    counted by the database, so a 10,000-device fleet is never read whole."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("site", query.site), ("asset_type", query.asset_type)):
        if value is not None:
            where.append(f"d.{column} = {mark}")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    devices = [decode(r) for r in read(f"SELECT {_DEVICE_COLUMNS} FROM devices d {clause} ORDER BY device_id "
                                       f"LIMIT {mark} OFFSET {mark}", [*params, query.limit, query.offset])]
    total, online = read(f"SELECT count(*), coalesce(sum(d.online), 0) FROM devices d {clause}", params)[0]
    versions = read(f"SELECT d.model_version, count(*) FROM devices d {clause} GROUP BY d.model_version "
                    "ORDER BY count(*) DESC, coalesce(d.model_version, '')", params)
    ids = [d.device_id for d in devices]
    open_rows = read(f"SELECT i.device_id, count(*) FROM incidents i WHERE {_OPEN} AND i.device_id IN "
                     f"({', '.join([mark] * len(ids))}) GROUP BY i.device_id", ids) if ids else []
    open_total = read(f"SELECT count(*) FROM incidents i JOIN devices d ON d.device_id = i.device_id "
                      f"WHERE {' AND '.join([_OPEN, *where])}", params)[0][0]
    return FleetPage(
        devices=devices, total=int(total), online=int(online), versions=[(r[0], int(r[1])) for r in versions],
        open_incidents={r[0]: int(r[1]) for r in open_rows}, open_total=int(open_total),
        sites=[r[0] for r in read("SELECT DISTINCT site FROM devices WHERE site IS NOT NULL ORDER BY site", [])],
        asset_types=[r[0] for r in read("SELECT DISTINCT asset_type FROM devices WHERE asset_type IS NOT NULL "
                                        "ORDER BY asset_type", [])],
    )


def _device(r: sqlite3.Row) -> Device:
    return Device(
        device_id=r[0], online=bool(r[1]), last_seen=r[2], model_version=r[3], agent_version=r[4], site=r[5],
        asset_type=r[6], cohort=r[7], shadow_version=r[8], status_ts=r[9], last_ts=r[10], first_seen=r[11],
    )

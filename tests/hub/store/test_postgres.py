"""What only the PostgreSQL store has: versioned migrations (the SQLite store's names), applied once however many
hub processes start, and writers that really run side by side (SQLite serialises them; PostgreSQL does not)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from hub.store.postgres import PostgresHubStore, schema
from hub.store.rows import IngestRecord
from hub.store.sqlite.schema import migrations as sqlite_migrations
from shared.errors import StoreError
from tests.fixtures.postgres import PostgresServer, create_database
from tests.hub.store.messages import anomaly, rec, status


def test_migrations_mirror_sqlites_and_apply_once(postgres_server: PostgresServer) -> None:
    url = create_database(postgres_server, "hub_migrations")
    names = [name for name, _ in schema.MIGRATIONS]
    assert names == [m.name for m in sqlite_migrations._migrations]  # same names, same order
    stores = []
    threads = [threading.Thread(target=lambda: stores.append(PostgresHubStore(url, max_size=2))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(stores) == 3  # three processes' worth of starts at once: none failed
        with psycopg.connect(url) as conn:
            applied = [r[0] for r in conn.execute(f"SELECT name FROM {schema.MIGRATIONS_TABLE} ORDER BY applied_at")]
        assert applied == names
    finally:
        for s in stores:
            s.close()


def test_concurrent_redeliveries_store_each_message_once(postgres_url: str) -> None:
    store = PostgresHubStore(postgres_url, max_size=4)
    try:
        batch = [rec(anomaly(f"dev-{i % 7}")) for i in range(200)]
        results = []
        barrier = threading.Barrier(4)

        def worker() -> None:
            barrier.wait()
            results.append(store.ingest_batch(list(reversed(batch)) if len(results) % 2 else batch))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r.stored.get("anomaly", 0) for r in results) == 200  # once, whoever won each row
        assert sum(r.duplicates.get("anomaly", 0) for r in results) == 600
        rows, cursor = store.anomalies_after(0, 1000)
        assert len(rows) == store.counts().anomalies and cursor >= len(rows)
    finally:
        store.close()


def test_a_status_row_survives_nul_free_text_rules(postgres_url: str) -> None:
    store = PostgresHubStore(postgres_url, max_size=2)
    try:
        store.add_dead_letter("fleetloop/dev-1/\x00", b"\x00", "bad_json", "nul \x00 inside", 1.0)
        [letter] = store.dead_letters(limit=1)
        assert letter.detail == "nul \\x00 inside" and letter.payload == b"\x00"
        store.ingest_batch([IngestRecord(status("dev-9", "online", 5.0), 6.0)])
        assert store.device("dev-9") is not None
    finally:
        store.close()


def test_a_database_not_encoded_utf8_is_refused_in_one_clear_line(postgres_server: PostgresServer) -> None:
    # An SQL_ASCII database (initdb under the C locale, as in a bare container) hands text back as bytes: the
    # migrations' record would never match their names, and every start would re-run m001 ("already exists").
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "hub_ascii"')
        conn.execute("CREATE DATABASE hub_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    with pytest.raises(StoreError, match=r"encoded 'SQL_ASCII', not UTF8.*createdb -E UTF8"):
        PostgresHubStore(postgres_server.url("hub_ascii"))
    with psycopg.connect(postgres_server.url("hub_ascii")) as conn:  # refused before anything was created
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)

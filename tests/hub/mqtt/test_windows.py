"""The raw-window job on a real store: it asks for the window each open incident shows, re-asks until the device
answers, gives up after `max_asks`, and prunes after the retention period."""

from __future__ import annotations

from pathlib import Path

from hub.mqtt.windows import WindowRequester
from hub.store.rows import IngestRecord
from shared.messages import Command, RawWindow
from tests.hub.api.conftest import T0, running_hub
from tests.hub.console.conftest import make_incidents


def test_the_job_asks_for_each_open_incidents_window_until_answered(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub.db") as hub:
        ids = make_incidents(hub)
        shown = {d: max(hub.store.incident_windows(i), key=lambda w: w.score).trace_id for d, i in ids.items()}
        sent: list[tuple[str, Command]] = []
        up = {"ok": False}

        def send(device: str, command: Command) -> bool:
            if up["ok"]:
                sent.append((device, command))
            return up["ok"]

        job = WindowRequester(hub.store, send, retry_s=60.0, max_asks=2, retention_s=3600.0)
        assert job.run(T0) == 0  # the broker is down: requests recorded, nothing sent
        assert {hub.store.raw_window(t).state for t in shown.values()} == {"requested"}  # type: ignore[union-attr]
        up["ok"] = True  # the broker is back: every request goes out at the next pass
        assert job.run(T0 + 1) == 3
        assert sorted((d, c.cmd, c.trace_ids) for d, c in sent) == sorted(
            (d, "upload_windows", [t]) for d, t in shown.items())
        assert job.run(T0 + 30) == 0  # asked less than retry_s ago
        hub.store.ingest_batch([IngestRecord(RawWindow(device_id="pump-1", ts=T0, trace_id=shown["pump-1"],
                                                       sensors=["t"], timestamps=[T0], values=[[1.0]]), T0 + 40)])
        sent.clear()
        assert job.run(T0 + 62) == 2 and {d for d, _ in sent} == {"pump-2", "pump-3"}  # the answered one is done
        assert job.run(T0 + 130) == 0  # asked twice, no answer: given up
        assert hub.store.raw_window(shown["pump-2"]).state == "unavailable"  # type: ignore[union-attr]
        assert hub.store.raw_window(shown["pump-1"]).state == "stored"  # type: ignore[union-attr]
        assert job.run(T0 + 3601) == 3  # past the retention period: pruned, and the open incidents' asked anew
        assert hub.store.raw_window(shown["pump-1"]).state == "requested"  # type: ignore[union-attr]

"""The raw-window job on a real store: it asks for the window each open incident shows, re-asks until the device
answers, gives up after `max_asks`, and prunes after the retention period."""

from __future__ import annotations

from pathlib import Path

from hub.mqtt.windows import WindowRequester
from hub.store.rows import IngestRecord
from shared.messages import Command, RawWindow, Sample
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


def _random_sample(device: str, trace_id: str, ts: float, reason: str = "random") -> Sample:
    return Sample(device_id=device, ts=ts, trace_id=trace_id, reason=reason, window_start=ts - 30.0, window_end=ts,
                  score=0.2, threshold=0.5, decision=False, features=[0.1])


def test_the_job_asks_for_the_random_slices_newest_windows_a_few_a_pass(tmp_path: Path) -> None:
    """The raw windows the hub learns regime statistics from: each pass asks for up to `learn_per_pass` of the
    newest random-slice windows not asked for yet, within the look-back; other samples are never asked for."""
    with running_hub(tmp_path / "hub.db") as hub:
        assert hub.services.windows is not None and hub.services.windows.learn_per_pass == 50  # the setting's default
        hub.store.ingest_batch([IngestRecord(m, T0) for m in (
            *(_random_sample(f"pump-{1 + i % 2}", f"r{i}", T0 - 100.0 + i) for i in range(5)),
            _random_sample("pump-1", "near", T0 - 50.0, reason="low_confidence"),
            _random_sample("pump-1", "stale", T0 - 2 * 86400.0),
        )])
        assert {p.trace_id for p in hub.store.predictions_by_trace(["near", "stale"])} == {"near", "stale"}
        sent: list[tuple[str, Command]] = []

        def send(device: str, command: Command) -> bool:
            sent.append((device, command))
            return True

        off = WindowRequester(hub.store, send, retention_s=30 * 86400.0)
        assert off.run(T0) == 0 and hub.store.raw_window("r4") is None  # 0 per pass (the default here): none
        job = WindowRequester(hub.store, send, retry_s=60.0, retention_s=30 * 86400.0, learn_per_pass=3,
                              learn_lookback_s=86400.0)
        assert job.run(T0) == 3
        assert sorted((d, c.cmd, c.trace_ids) for d, c in sent) == [
            ("pump-1", "upload_windows", ["r2", "r4"]), ("pump-2", "upload_windows", ["r3"])]
        sent.clear()
        assert job.run(T0 + 10) == 2  # the rest of the slice; the asked ones wait for retry_s
        assert sorted(t for _, c in sent for t in c.trace_ids) == ["r0", "r1"]
        hub.store.ingest_batch([IngestRecord(RawWindow(
            device_id="pump-1", ts=T0 + 20, trace_id="r4", unit="u1", sensors=["t"], timestamps=[T0 - 97.0, T0 - 96.0],
            values=[[1.0, 2.0]], service=12), T0 + 20)])
        sent.clear()
        assert job.run(T0 + 70) == 2  # r2 and r3 again (unanswered); r4 arrived; "near" and "stale" never
        assert sorted(t for _, c in sent for t in c.trace_ids) == ["r2", "r3"]
        stored = hub.store.stored_raw_windows(since=0.0)
        assert [(w.trace_id, w.service) for w in stored] == [("r4", 12)]
        assert hub.store.raw_window("near") is None and hub.store.raw_window("stale") is None


def test_the_random_slice_is_asked_for_at_most_learn_per_day_windows_in_any_24_hours(tmp_path: Path) -> None:
    """A large fleet's random slice would fill the hub's disk with windows kept for the retention period; regimes
    need a few hundred. The daily cap counts what this job asked for in the last 24 hours."""
    with running_hub(tmp_path / "hub.db") as hub:
        assert hub.services.windows is not None and hub.services.windows.learn_per_day == 500  # the default
        hub.store.ingest_batch([IngestRecord(_random_sample("pump-1", f"r{i}", T0 - 100.0 + i), T0)
                                for i in range(8)])
        asked: list[str] = []

        def send(device: str, command: Command) -> bool:
            asked.extend(command.trace_ids)
            return True

        job = WindowRequester(hub.store, send, retry_s=1e9, retention_s=30 * 86400.0, learn_per_pass=3,
                              learn_per_day=4)
        assert job.run(T0) == 3 and job.run(T0 + 30) == 1  # the day's fourth
        assert job.run(T0 + 60) == 0 and len(asked) == 4
        hub.store.ingest_batch([IngestRecord(_random_sample("pump-1", f"late{i}", T0 + 86400.0 + i), T0 + 86400.0)
                                for i in range(5)])
        assert job.run(T0 + 86400.0 + 30) == 3  # a day after the first asks, their budget is back
        assert sorted(asked[-3:]) == ["late2", "late3", "late4"]  # the newest first

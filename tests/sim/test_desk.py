"""The technicians' desk: the hub's queue by site, device-only traces on site, delays, idempotent annotations."""

from __future__ import annotations

import doctest
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

import sim.desk
from shared.messages import Annotation
from sim import MachineConfig, SensorOffset
from sim.desk import LoggedPrediction, TechnicianDesk, site_staff
from sim.technicians import GroundTruth, PredictionLike, SimDevice

T0, RATE, HORIZON = 1_700_000_000.0, 100.0, 100
DRIFT = SensorOffset(sensor="vibration", offset=-2.0, start_t=500)


def fleet() -> dict[str, SimDevice]:
    configs = [MachineConfig(site="site-a"), MachineConfig(site="site-b", asset_type="compressor")]
    return {f"d{i}": SimDevice(f"d{i}", seed=i + 1, config=configs[i % 2], drifts=(DRIFT,) if i % 2 == 0 else (),
                               start_ts=T0, rate=RATE)
            for i in range(4)}


def logged(device: SimDevice, steps: Sequence[int], *, lag: float = 0.5,
           reported: str | None = None) -> list[LoggedPrediction]:
    """One prediction per step, scored `lag` s after its window's last reading, rows numbered from 1."""
    return [LoggedPrediction(i + 1, f"{device.device_id}-{t}", device.device_id, device.ts_of(t) + lag,
                             device.ts_of(t), "v1", reported) for i, t in enumerate(steps)]


class Inbox:
    """An in-memory hub: a queue, the annotations it got (stored once by id)."""

    def __init__(self, queue: Sequence[PredictionLike] = ()) -> None:
        self.queue = list(queue)
        self.notes: dict[str, Annotation] = {}

    def unlabelled(self, since: float) -> Sequence[PredictionLike]:
        labelled = {n.trace_id for n in self.notes.values()}
        return [p for p in self.queue if p.ts >= since and p.trace_id not in labelled]

    def submit(self, annotations: Sequence[Annotation], now: float) -> None:
        for a in annotations:
            self.notes.setdefault(a.annotation_id, a)


class Logs:
    """In-memory device logs, and the annotations made at the machines (stored once by id)."""

    def __init__(self, rows: dict[str, list[LoggedPrediction]]) -> None:
        self.rows = rows
        self.reads: list[tuple[str, int, float]] = []
        self.notes: dict[str, Annotation] = {}

    def logged(self, device_id: str, *, after_row: int, until_ts: float) -> list[LoggedPrediction]:
        self.reads.append((device_id, after_row, until_ts))
        return [r for r in self.rows.get(device_id, []) if r.row_id > after_row and r.ts <= until_ts]

    def record(self, annotations: Sequence[Annotation]) -> None:
        for a in annotations:
            self.notes.setdefault(a.annotation_id, a)


def test_doctests() -> None:
    assert doctest.testmod(sim.desk).failed == 0


def test_the_site_technician_labels_the_hub_queue_from_ground_truth_after_the_delay() -> None:
    devices = fleet()
    queue = [p for d in devices.values() for p in logged(d, range(100, 2000, 5))]
    inbox = Inbox(queue)
    staff = site_staff(devices, horizon=HORIZON, error_rates=(0.0,))
    desk = TechnicianDesk(devices, inbox=inbox, staff=staff)

    early = T0 + 10.0  # predictions up to step ~950 are a second old (queue delay 1 s)
    desk.run(early)
    assert inbox.notes and all(devices[n.device_id].ts_of(int(n.trace_id.split("-")[1])) + 0.5 <= early - 1.0
                               for n in inbox.notes.values())
    desk.run(T0 + 100.0)
    assert len(inbox.notes) == len(queue)
    truth = GroundTruth()
    for n in inbox.notes.values():
        device = devices[n.device_id]
        step = int(n.trace_id.split("-")[1])
        assert (n.label == "fault") == (truth.rul_at(device, step) <= HORIZON)
        assert n.technician_id == f"tech-{device.config.site}" and n.signal == "confirmed"
    assert 0 < desk.tally.faults < desk.tally.annotations == len(queue)
    assert desk.run(T0 + 200.0) == 0  # nothing left in the queue


def test_noisy_technicians_are_wrong_about_the_same_windows_every_time() -> None:
    devices = fleet()
    queue = [p for d in devices.values() for p in logged(d, range(100, 3000, 5))]
    staff = site_staff(devices, horizon=HORIZON, error_rates=(0.0, 0.2), seed=4)
    runs = []
    for _ in range(2):
        inbox = Inbox(queue)
        TechnicianDesk(devices, inbox=inbox, staff=staff).run(T0 + 100.0)
        runs.append({n.trace_id: n.label for n in inbox.notes.values()})
    assert runs[0] == runs[1]
    truth = GroundTruth()
    wrong = {d: [] for d in ("site-a", "site-b")}
    for trace, label in runs[0].items():
        device = devices[trace.split("-")[0]]
        step = int(trace.split("-")[1])
        wrong[device.config.site].append((label == "fault") != (truth.rul_at(device, step) <= HORIZON))
    assert not any(wrong["site-a"]) and 0.15 < np.mean(wrong["site-b"]) < 0.25


def test_on_site_labels_at_the_machine_only_what_the_device_did_not_report_and_reads_each_row_once() -> None:
    devices = fleet()
    rows = {d: [replace(r, reported="random" if i % 2 == 0 else None)  # every other window went to the hub
                for i, r in enumerate(logged(dev, range(100, 1000, 5)))] for d, dev in devices.items()}
    in_hub = [r for rs in rows.values() for r in rs[::2]]
    inbox, logs = Inbox(in_hub), Logs(rows)
    staff = site_staff(devices, horizon=HORIZON, on_site_delay_s=2.0)
    desk = TechnicianDesk(devices, inbox=inbox, staff=staff, logs=logs, settle_s=1.0)

    now = T0 + 6.0
    desk.run(now)
    assert all(until == now - 2.0 for _, _, until in logs.reads)  # the larger of settle_s and the on-site delay
    by = {}
    for n in (*inbox.notes.values(), *logs.notes.values()):
        by.setdefault(n.technician_id, set()).add(n.trace_id)
    hub_traces, device_only = {p.trace_id for p in in_hub}, {r.trace_id for rs in rows.values() for r in rs[1::2]}
    assert by["tech-on-site"] <= device_only and by["tech-on-site"]
    assert {n.technician_id for n in logs.notes.values()} == {"tech-on-site"}  # at the machine, not the hub's API
    assert "tech-on-site" not in {n.technician_id for n in inbox.notes.values()}
    assert (by.get("tech-site-a", set()) | by.get("tech-site-b", set())) <= hub_traces

    desk.run(T0 + 100.0)
    labelled = {n.trace_id for n in (*inbox.notes.values(), *logs.notes.values())}
    assert labelled == hub_traces | device_only  # every window, each labelled once
    assert len(inbox.notes) + len(logs.notes) == len(labelled) == desk.tally.annotations
    assert desk.tally.on_site == len(device_only) and desk.tally.hub_queue == len(hub_traces)
    assert desk.run(T0 + 200.0) == 0
    assert [after for d, after, _ in logs.reads if d == "d0"][-1] == rows["d0"][-1].row_id  # where it stopped


def test_devices_outside_the_desk_and_sites_without_a_technician_are_left_alone() -> None:
    devices = fleet()
    stranger = SimDevice("elsewhere", seed=9, start_ts=T0, rate=RATE)
    queue = logged(devices["d0"], [200]) + logged(devices["d1"], [200]) + logged(stranger, [200])
    inbox = Inbox(queue)
    staff = site_staff({"d0": devices["d0"]}, horizon=HORIZON)  # only site-a has a technician
    desk = TechnicianDesk(devices, inbox=inbox, staff=staff)
    assert desk.run(T0 + 100.0) == 1
    assert [n.device_id for n in inbox.notes.values()] == ["d0"]


def test_a_restarted_machine_is_judged_from_its_new_run_and_its_earlier_windows_are_left_alone() -> None:
    devices = fleet()
    first = devices["d1"]
    again = replace(first, start_ts=T0 + 50.0, drifts=(DRIFT,))
    old = logged(first, [200, 300])
    new = [replace(r, trace_id=f"{r.trace_id}-again") for r in logged(again, [200, 300])]
    inbox = Inbox(old + new)
    logs = Logs({"d1": [replace(r, row_id=i + 1) for i, r in enumerate(old + new)]})
    desk = TechnicianDesk(devices, inbox=inbox, staff=site_staff(devices, horizon=HORIZON), logs=logs)
    desk.restarted(again)
    desk.run(T0 + 100.0)
    assert {n.trace_id for n in inbox.notes.values()} == {r.trace_id for r in new}
    assert {n.trace_id for n in logs.notes.values()} == {r.trace_id for r in new}
    assert desk.tally.annotations == 4 and desk.run(T0 + 200.0) == 0


def test_site_staff_shares_one_ground_truth_and_deals_error_rates_over_sorted_sites() -> None:
    devices = fleet()
    truth = GroundTruth()
    staff = site_staff(devices, horizon=HORIZON, truth=truth, error_rates=(0.05, 0.1), queue_delay_s=3.0)
    assert sorted(staff.by_site) == ["site-a", "site-b"]
    assert [(t.technician_id, t.error_rate, t.delay_s) for t in staff.by_site.values()] == [
        ("tech-site-a", 0.05, 3.0), ("tech-site-b", 0.1, 3.0)]
    assert staff.on_site is not None and staff.on_site.error_rate == 0.0
    assert all(t.truth is truth for t in (*staff.by_site.values(), staff.on_site))


def test_ground_truth_for_many_steps_is_the_same_as_one_by_one() -> None:
    device = fleet()["d0"]
    steps = np.array([0, 5, 4095, 4096, 9000, 12, 9000])
    many = GroundTruth().rul_of(device, steps)
    one = GroundTruth()
    assert many.tolist() == [one.rul_at(device, int(s)) for s in steps]
    assert GroundTruth().rul_of(device, np.array([], dtype=np.int64)).shape == (0,)
    with pytest.raises(ValueError):
        GroundTruth().rul_of(device, np.array([-1]))

"""The simulated maintenance log: failures and inspections as time ranges, with a person's noise, order-free."""

from __future__ import annotations

import doctest

import numpy as np

import sim.maintenance
from sim import MachineConfig
from sim.desk import TechnicianDesk, site_staff
from sim.maintenance import MaintenanceLog
from sim.technicians import GroundTruth, SimDevice
from tests.sim.test_desk import HORIZON, RATE, T0, Inbox, Logs, fleet, logged

STEPS = 6000


def failures(device: SimDevice, truth: GroundTruth, upto: int) -> list[int]:
    return np.flatnonzero(truth.rul_of(device, np.arange(upto + 1)) == 0).tolist()


def test_doctests() -> None:
    assert doctest.testmod(sim.maintenance).failed == 0


def test_an_exact_log_names_every_failure_over_its_horizon_and_vouches_only_for_healthy_stretches() -> None:
    devices, truth = fleet(), GroundTruth()
    log = MaintenanceLog("tech", fleet=dict(devices), horizon=HORIZON, seed=1, delay_s=0.0, truth=truth,
                         missed_rate=0.0, jitter=0, inspect_error_rate=0.0)
    notes = log.report(now=T0 + STEPS / RATE)
    for device_id, device in devices.items():
        mine = [n for n in notes if n.device_id == device_id]
        assert all(n.trace_id is None and n.technician_id == "tech" for n in mine)
        faults = sorted((device.step_at(n.start_ts), device.step_at(n.end_ts)) for n in mine if n.label == "fault")
        assert faults == [(max(0, f - HORIZON), f) for f in failures(device, truth, STEPS)]
        healthy = [n for n in mine if n.label == "no_fault"]
        assert healthy, device_id
        for n in healthy:
            span = np.arange(device.step_at(n.start_ts), device.step_at(n.end_ts) + 1)
            assert (truth.rul_of(device, span) > HORIZON).all()


def test_a_person_misses_some_failures_blurs_the_ends_and_sometimes_calls_a_wearing_machine_healthy() -> None:
    devices, truth = fleet(), GroundTruth()
    log = MaintenanceLog("tech", fleet=dict(devices), horizon=HORIZON, seed=3, delay_s=0.0, truth=truth,
                         missed_rate=0.3, jitter=10, inspect_every=200, inspect_span=150, inspect_error_rate=0.5)
    notes = log.report(now=T0 + STEPS / RATE)
    n_failures = sum(len(failures(d, truth, STEPS)) for d in devices.values())
    faults = [n for n in notes if n.label == "fault"]
    assert 0.4 * n_failures < len(faults) < n_failures  # some never logged
    ends = [devices[n.device_id].step_at(n.end_ts) for n in faults]
    assert any(truth.rul_at(devices[n.device_id], e) != 0 for n, e in zip(faults, ends, strict=True))  # blurred
    wrong = [n for n in notes if n.label == "no_fault" and (truth.rul_of(
        devices[n.device_id], np.arange(devices[n.device_id].step_at(n.start_ts),
                                        devices[n.device_id].step_at(n.end_ts) + 1)) <= HORIZON).any()]
    assert wrong  # inspections over a wearing machine called healthy


def test_the_log_is_the_same_however_often_it_is_read_and_waits_for_its_delay() -> None:
    devices = fleet()
    once = MaintenanceLog("tech", fleet=dict(devices), horizon=HORIZON, seed=2, delay_s=3.0)
    often = MaintenanceLog("tech", fleet=dict(devices), horizon=HORIZON, seed=2, delay_s=3.0)
    end = T0 + 3.0 + STEPS / RATE
    many = [n for k in range(1, 41) for n in often.report(now=T0 + k * (end - T0) / 40)]
    whole = once.report(now=end)
    key = lambda n: (n.device_id, n.label, n.start_ts, n.end_ts)  # noqa: E731
    assert sorted(map(key, many)) == sorted(map(key, whole))
    assert len({n.annotation_id for n in whole}) == len(whole)
    assert max(n.end_ts for n in whole) <= end - 3.0
    assert once.report(now=end) == []


def test_the_desk_records_the_log_at_the_machines_and_the_queue_on_a_budget() -> None:
    devices = fleet()
    queue = [p for d in devices.values() for p in logged(d, range(100, 3000, 5), reported="random")]
    inbox, logs = Inbox(queue), Logs({})
    staff = site_staff(devices, horizon=HORIZON, maintenance_log=True, on_site_delay_s=1.0)
    assert staff.on_site is None and staff.log is not None
    desk = TechnicianDesk(devices, inbox=inbox, staff=staff, logs=logs, since=T0, queue_per_s=2.0)
    for k in range(1, 31):
        desk.run(T0 + k)
    # two sites, at most 2 answers a second each: 120 of the 2,300 queued
    assert len(inbox.notes) == desk.tally.hub_queue <= 2 * 2.0 * 30 and desk.tally.hub_queue >= 100
    assert {devices[n.device_id].config.site for n in inbox.notes.values()} == {"site-a", "site-b"}
    assert len({n.device_id for n in inbox.notes.values()}) == 4  # devices in turn, not the first one's backlog
    assert logs.notes and all(n.trace_id is None and n.start_ts is not None for n in logs.notes.values())
    assert desk.tally.on_site == len(logs.notes) and desk.tally.annotations == len(logs.notes) + len(inbox.notes)


def test_a_restarted_machine_is_logged_from_its_new_run() -> None:
    devices = fleet()
    log = MaintenanceLog("tech", fleet=dict(devices), horizon=HORIZON, seed=2, delay_s=0.0)
    log.report(now=T0 + 30.0)
    again = SimDevice("d0", seed=9, config=MachineConfig(site="site-a"), start_ts=T0 + 30.0, rate=RATE)
    log.restarted(again)
    notes = [n for n in log.report(now=T0 + 60.0) if n.device_id == "d0"]
    assert notes and min(n.start_ts for n in notes) >= T0 + 30.0

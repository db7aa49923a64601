"""`Leadership` over a real store shared by several "processes": one leads, a killed leader is replaced, a
stopped one hands over at once; `Periodic` runs its task only while its gate is open."""

from __future__ import annotations

import threading
from pathlib import Path

from hub.app.leader import Leadership
from hub.app.periodic import Periodic
from hub.store.sqlite import SqliteHubStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_process_leads_a_dead_one_is_replaced_and_a_stopped_one_hands_over(tmp_path: Path) -> None:
    store = SqliteHubStore(tmp_path / "hub.db")
    clock = Clock()
    a, b = (Leadership(store, name, ttl_s=30, clock=clock) for name in ("a", "b"))
    assert a.renew() and a.is_leader()
    assert not b.renew() and not b.is_leader()
    clock.now += 31  # a was killed: it renews no more, its lease runs out
    assert b.renew() and b.is_leader()
    assert not a.renew() and not a.is_leader()  # a came back: b keeps the jobs
    b.start()
    b.stop()  # a clean stop releases the lease
    assert not b.is_leader()
    assert store.lease_holder("hub-jobs", now=clock.now) is None
    assert a.renew() and a.changes == 2 and b.changes == 1
    store.close()


def test_a_leader_cut_off_from_its_store_stops_leading_when_its_lease_would_end(tmp_path: Path) -> None:
    store = SqliteHubStore(tmp_path / "hub.db")
    leader = Leadership(store, "a", ttl_s=0.3)
    assert leader.renew()
    store.close()
    (tmp_path / "hub.db").unlink()  # every later renewal fails
    assert leader.renew() is True  # still within its lease
    threading.Event().wait(0.3)
    assert leader.renew() is False and not leader.is_leader()


def test_a_gated_job_runs_only_while_the_gate_is_open() -> None:
    open_gate = threading.Event()
    ran = threading.Event()
    job = Periodic("drift", 0.01, lambda now: ran.set(), gate=open_gate.is_set)
    job.start()
    try:
        assert not ran.wait(0.2) and job.state().standby and job.runs == 0
        assert job.state().last_run is not None  # attempts on standby: not overdue in /health
        open_gate.set()
        assert ran.wait(5)
    finally:
        job.stop()
    assert job.runs >= 1

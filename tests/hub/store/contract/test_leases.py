"""Named leases on both backends: one holder at a time, renewed by its holder, taken over once expired."""

from __future__ import annotations

from hub.store.ports import HubStore


def test_one_holder_at_a_time_until_it_expires_or_is_released(store: HubStore) -> None:
    assert store.lease_holder("jobs", now=0.0) is None
    assert store.acquire_lease("jobs", "a", ttl_s=10, now=100.0)
    assert not store.acquire_lease("jobs", "b", ttl_s=10, now=105.0)  # a's lease runs to 110
    assert store.acquire_lease("jobs", "a", ttl_s=10, now=108.0)  # renewed to 118
    assert not store.acquire_lease("jobs", "b", ttl_s=10, now=117.9)
    assert store.lease_holder("jobs", now=117.9) == "a"
    assert store.acquire_lease("jobs", "b", ttl_s=10, now=118.0)  # a died: b takes over
    assert store.lease_holder("jobs", now=118.0) == "b"
    assert not store.acquire_lease("jobs", "a", ttl_s=10, now=119.0)
    store.release_lease("jobs", "a")  # not a's any more: nothing happens
    assert store.lease_holder("jobs", now=119.0) == "b"
    store.release_lease("jobs", "b")
    assert store.lease_holder("jobs", now=119.0) is None
    assert store.acquire_lease("jobs", "a", ttl_s=10, now=119.0)
    assert store.acquire_lease("other", "b", ttl_s=10, now=119.0)  # leases are independent

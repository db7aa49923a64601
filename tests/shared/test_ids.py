from __future__ import annotations

import time

import pytest

from shared.ids import id_time, new_id


def test_ids_are_unique_sorted_and_on_the_clock_at_high_rates():
    before = time.time()
    ids = [new_id() for _ in range(100_000)]  # far more than one per millisecond
    after = time.time()
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert before - 0.002 <= id_time(ids[0]) <= id_time(ids[-1]) <= after + 0.002


def test_id_time_refuses_other_versions():
    with pytest.raises(ValueError, match="UUIDv7"):
        id_time("6ba7b810-9dad-11d1-80b4-00c04fd430c8")

"""The label-selection policy: budget, the recorded random slice, diversity, disagreement, uncertainty, seeds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.labels.selection import Candidate, budget_for, select


def fleet(n: int = 60) -> list[Candidate]:
    rng = random.Random(3)
    return [Candidate(f"t{i:03d}", score=rng.random(), threshold=0.5, device=f"d{i % 3}", ts=float(i),
                      cohort=f"r{i % 2}") for i in range(n)]


def test_the_budget_is_filled_with_a_recorded_random_share_first() -> None:
    picks = select(fleet(), 10, seed=7, random_share=0.2)
    assert len(picks) == 10 and len({p.candidate.key for p in picks}) == 10
    assert [p.reason for p in picks[:2]] == ["random", "random"]
    assert all(p.reason == "uncertainty" for p in picks[2:])
    assert [p.rank for p in picks] == list(range(10))


def test_strata_take_turns_so_no_device_or_regime_takes_the_budget() -> None:
    near = [Candidate(f"a{i}", 0.5 + i / 1000, 0.5, "busy", float(i)) for i in range(20)]  # all close to 0.5
    far = [Candidate(f"b{i}", 0.9, 0.5, "quiet", float(i)) for i in range(5)]
    picks = select(near + far, 6, seed=1, random_share=0.0)
    assert [p.candidate.device for p in picks] == ["busy", "quiet"] * 3
    assert [p.candidate.key for p in picks if p.candidate.device == "busy"] == ["a0", "a1", "a2"]  # closest first


def test_shadow_disagreement_goes_before_uncertainty() -> None:
    close = Candidate("close", 0.51, 0.5, "d", 1.0)
    split = Candidate("split", 0.9, 0.5, "d", 2.0, shadow_score=0.2, shadow_threshold=0.4)
    agree = Candidate("agree", 0.52, 0.5, "d", 3.0, shadow_score=0.8)
    picks = select([close, split, agree], 3, seed=1, random_share=0.0)
    assert [(p.candidate.key, p.reason) for p in picks] == [("split", "disagreement"), ("close", "uncertainty"),
                                                             ("agree", "uncertainty")]


def test_a_score_that_is_not_a_number_comes_last() -> None:
    picks = select([Candidate("nan", float("nan"), 0.5, "d", 0.0), Candidate("far", 0.99, 0.5, "d", 1.0)], 1,
                   seed=1, random_share=0.0)
    assert picks[0].candidate.key == "far"


@settings(max_examples=40, deadline=None)
@given(budget=st.integers(0, 70), seed=st.integers(0, 5), share=st.sampled_from([0.0, 0.2, 0.5, 1.0]))
def test_the_same_inputs_in_any_order_give_the_same_picks(budget: int, seed: int, share: float) -> None:
    cands = fleet()
    shuffled = random.Random(seed).sample(cands, len(cands))
    a = select(cands, budget, seed=seed, random_share=share)
    assert a == select(shuffled, budget, seed=seed, random_share=share)
    assert len(a) == min(budget, len(cands))
    assert sum(p.reason == "random" for p in a) == min(len(a), budget_for(share, len(a)))


def test_seeds_draw_different_random_slices() -> None:
    keys = {tuple(p.candidate.key for p in select(fleet(), 10, seed=s) if p.reason == "random") for s in range(5)}
    assert len(keys) > 1


def test_budget_for_and_refusals() -> None:
    assert (budget_for(0.1, 95), budget_for(0.25, 4), budget_for(0.0, 9)) == (10, 1, 0)
    with pytest.raises(ValueError):
        budget_for(1.5, 3)
    with pytest.raises(ValueError):
        select(fleet(), -1, seed=1)
    with pytest.raises(ValueError):
        select(fleet(), 1, seed=1, random_share=2.0)

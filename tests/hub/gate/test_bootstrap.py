"""The gate's paired block bootstrap: seeded goldens on a slice shaped like the evaluation split (devices ×
hour blocks of overlapping windows, a failure filling the end of a block) and laws over random slices."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.app.cli import gate_lines
from hub.gate.verdict import (
    GateConfig,
    GateDecision,
    GateInput,
    ParityNumbers,
    block_bootstrap,
    check_names,
    evaluate_gate,
    metrics_on_slice,
    paired_slice,
)

OK_PARITY = ParityNumbers(max_abs_diff=2e-7, label_flips=0, passed=True)
SITES = ("site-a", "site-b", "site-c")  # 7, 6 and 3 devices
PER_BLOCK = 50  # windows in one device's hour


class Fleet(NamedTuple):
    y: np.ndarray
    scores: np.ndarray  # the incumbent's
    cohorts: np.ndarray
    blocks: np.ndarray

    @property
    def step(self) -> np.ndarray:
        """Each window's place in its block."""
        return np.tile(np.arange(PER_BLOCK), self.y.size // PER_BLOCK)


def _fleet(
    seed: int = 3, *, n_failures: int = 24, fail_len: int = 15, n_devices: int = 16, n_blocks: int = 5
) -> Fleet:
    """Labels, the incumbent's scores, cohorts and blocks of 16 devices × 5 hours × 50 windows (4,000 rows).

    `n_failures` blocks end in a failure whose last `fail_len` windows are positive; windows of one block
    share a score offset, as overlapping windows of the same minutes do.
    """
    rng = np.random.default_rng(seed)
    n_bl = n_devices * n_blocks
    device = np.repeat(np.arange(n_devices), n_blocks * PER_BLOCK)
    hour = np.tile(np.repeat(np.arange(n_blocks), PER_BLOCK), n_devices)
    step = np.tile(np.arange(PER_BLOCK), n_bl)
    blocks = np.array([f"dev-{d}@{h}" for d, h in zip(device, hour, strict=True)])
    cohorts = np.array(SITES)[np.searchsorted([7, 13], device, side="right")]
    failing = np.zeros(n_bl, dtype=bool)
    failing[rng.choice(n_bl, n_failures, replace=False)] = True
    y = np.repeat(failing, PER_BLOCK) & (step >= PER_BLOCK - fail_len)
    offset = np.repeat(rng.normal(0.0, 0.08, n_bl), PER_BLOCK)
    scores = np.clip(np.where(y, 0.7, 0.2) + offset + rng.normal(0.0, 0.1, y.size), 0.0, 1.0)
    return Fleet(y.astype(int), scores, cohorts, blocks)


FLEET = _fleet()


def _judge(cand: np.ndarray, *, per_window: bool = True, fleet: Fleet = FLEET, cfg: GateConfig | None = None
           ) -> GateDecision:
    y, inc, cohorts, blocks = fleet
    c, i, tables = metrics_on_slice(y, cand, inc, (0.5, 0.5), cohorts)
    paired = paired_slice(y, cand, inc, (0.5, 0.5), blocks=blocks, cohorts=cohorts) if per_window else None
    return evaluate_gate(GateInput(c, i, OK_PARITY, 1.0, tables.candidate, tables.incumbent, paired), cfg)


def _blocks_of(site: str, *, positive: bool) -> list[str]:
    have = set(FLEET.blocks[(FLEET.cohorts == site) & (FLEET.y == 1)].tolist())
    return sorted(have if positive else set(FLEET.blocks[FLEET.cohorts == site].tolist()) - have)


def test_the_fleet_slice_has_few_failures_in_many_windows() -> None:
    assert (FLEET.y.size, int(FLEET.y.sum()), len(set(FLEET.blocks.tolist()))) == (4000, 360, 80)
    decision = _judge(FLEET.scores)
    assert decision.bootstrap is not None
    assert (decision.bootstrap.positive_blocks, decision.bootstrap.negative_blocks) == (24, 80)
    # site-c: 60 positive windows (enough by windows) from 4 failures (not enough by blocks)
    tiny = decision.check("cohort_recall:site-c")
    assert tiny.passed and tiny.blocks == 4 and tiny.detail == (
        "not judged: 60 in 4 blocks positives in the cohort, need 20 in 5")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_false_alarm_rise_from_one_block_is_within_noise_and_passes(seed: int) -> None:
    bad_hour = _blocks_of("site-a", positive=False)[0]  # one device's bad hour: every window alarms
    cand = np.where(FLEET.blocks == bad_hour, 0.9, FLEET.scores)
    decision = _judge(cand, cfg=GateConfig(bootstrap_seed=seed))
    far, cohort_far = decision.check("false_alarm_rate"), decision.check("cohort_false_alarm_rate:site-a")
    assert decision.verdict == "pass", decision.reasons
    assert far.value == pytest.approx(50 / 3640) and far.value > far.limit and far.passed  # over tolerance...
    assert far.ci_low == 0.0 and far.ci_high > 0.03 and far.blocks == 80  # ...but not significantly worse
    assert far.detail.endswith("within noise (lower bound not above 0)")
    assert cohort_far.value > cohort_far.limit and cohort_far.passed and cohort_far.ci_low == 0.0
    # Counted as independent windows, the same candidate is rejected.
    point = _judge(cand, per_window=False)
    assert point.verdict == "fail" and not point.check("false_alarm_rate").passed


def test_a_false_alarm_rise_across_many_blocks_fails() -> None:
    rng = np.random.default_rng(1)
    cand = np.where((FLEET.y == 0) & (rng.random(FLEET.y.size) < 0.03), 0.9, FLEET.scores)  # +3 % alarms, everywhere
    decision = _judge(cand)
    far = decision.check("false_alarm_rate")
    assert decision.verdict == "fail" and not far.passed
    assert round(far.value, 4) == 0.0305 and far.ci_low > 0.02 and far.detail.endswith("significantly worse")
    failed = [c.name for c in decision.checks if not c.passed]
    assert failed == ["false_alarm_rate", *(f"cohort_false_alarm_rate:{s}" for s in SITES)]


def test_a_recall_drop_across_many_failures_fails() -> None:
    late = (FLEET.y == 1) & (FLEET.step < PER_BLOCK - 5)  # each failure caught in its last 5 windows only
    cand = np.where(late, 0.1, FLEET.scores)
    decision = _judge(cand)
    recall = decision.check("recall")
    assert decision.verdict == "fail" and not recall.passed and recall.ci_low > 0.5 and recall.blocks == 24
    assert decision.reasons[0].startswith("recall: candidate 0.3139 vs incumbent 0.9278: drop +0.6139")
    assert {c.name for c in decision.checks if not c.passed} == {"recall", "cohort_recall:site-a",
                                                                 "cohort_recall:site-b"}


@pytest.mark.parametrize(("missed", "verdict"), [(1, "pass"), (2, "pass"), (3, "fail"), (6, "fail")])
def test_whole_failures_missed_count_as_blocks_not_windows(missed: int, verdict: str) -> None:
    """The rule's price, pinned: one or two missed failures are within noise, three are not."""
    lost = _blocks_of("site-a", positive=True)[:missed]
    missing = np.isin(FLEET.blocks, lost) & (FLEET.y == 1)
    decision = _judge(np.where(missing, 0.0, FLEET.scores))
    assert decision.verdict == verdict
    drop = decision.check("recall").value  # the faults the incumbent caught in those failures
    assert drop == pytest.approx(np.sum(missing & (FLEET.scores >= 0.5)) / 360) and drop > 0.02


def test_a_significant_rise_within_tolerance_passes() -> None:
    rng = np.random.default_rng(1)
    cand = np.where((FLEET.y == 0) & (rng.random(FLEET.y.size) < 0.006), 0.9, FLEET.scores)
    far = _judge(cand).check("false_alarm_rate")
    assert far.passed and far.ci_low > 0 and far.value < far.limit


def test_too_few_distinct_failures_are_insufficient_data() -> None:
    few = _fleet(n_failures=3, fail_len=PER_BLOCK)  # 150 positive windows, 3 failures
    assert int(few.y.sum()) == 150
    for cand in (few.scores, np.zeros_like(few.scores)):  # as good, or useless: three failures cannot tell
        decision = _judge(cand, fleet=few)
        assert decision.verdict == "insufficient_data" and not decision.passed
        assert decision.reasons == ("min_positive_blocks: distinct blocks (device × time block) with a "
                                    "confirmed fault 3, need 10",)


def test_same_input_same_record_whatever_the_row_order() -> None:
    rng = np.random.default_rng(5)
    cand = np.where((FLEET.y == 0) & (rng.random(FLEET.y.size) < 0.01), 0.9, FLEET.scores)
    first = _judge(cand).to_dict()
    assert _judge(cand).to_dict() == first
    order = rng.permutation(FLEET.y.size)
    shuffled = _judge(cand[order], fleet=Fleet(*(a[order] for a in FLEET)))
    assert shuffled.to_dict()["checks"] == first["checks"] and shuffled.to_dict()["bootstrap"] == first["bootstrap"]
    other_seed = _judge(cand, cfg=GateConfig(bootstrap_seed=1)).to_dict()
    assert other_seed["checks"] != first["checks"] and other_seed["verdict"] == first["verdict"]


def test_the_cli_shows_the_intervals() -> None:
    record = json.loads(json.dumps(_judge(np.where(FLEET.blocks == "dev-0@0", 0.9, FLEET.scores)).to_dict()))
    lines = gate_lines(record)
    assert lines[0] == ("gate: pass (paired block bootstrap, 1000 resamples, seed 0: 24 positive and 80 negative "
                        "of 80 blocks; a metric fails beyond its tolerance when the 95% lower bound is > 0)")
    assert lines[1].startswith("  recall trade 'alarm_flood': the incumbent does not flood")
    far = next(line for line in lines if line.split()[0] == "false_alarm_rate")
    assert far.split()[1] == "ok" and "90% interval [+0.0000, +0.04" in far and "over 80 blocks" in far
    old = {"verdict": "fail", "checks": [{"name": "recall", "passed": False, "value": 0.3, "limit": 0.02}]}
    assert gate_lines(old) == ["gate: fail", f"  {'recall':<36} FAIL "]  # a record from before the bootstrap


# --- laws -------------------------------------------------------------------------------------------------

ALL_JUDGED = GateConfig(min_positives=0, min_negatives=0, min_cohort_positives=0, min_cohort_negatives=0,
                        min_positive_blocks=0, min_negative_blocks=0, min_cohort_positive_blocks=0,
                        min_cohort_negative_blocks=0, bootstrap_resamples=200)


@st.composite
def slices(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    n = draw(st.integers(1, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = (rng.random(n) < draw(st.floats(0.0, 1.0))).astype(int)
    blocks = rng.integers(0, draw(st.integers(1, 40)), n).astype(str)
    cohorts = rng.choice(["a", "b/c", "d"][: draw(st.integers(1, 3))], n)
    return y, rng.random(n), cohorts, blocks, draw(st.floats(0.0, 1.0))


@settings(max_examples=60, deadline=None)
@given(slices(), st.integers(0, 2**31 - 1))
def test_identical_models_pass_every_check_with_zero_deltas(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], seed: int
) -> None:
    y, s, cohorts, blocks, t = case
    c, i, tables = metrics_on_slice(y, s, s, (t, t), cohorts)
    paired = paired_slice(y, s, s, (t, t), blocks=blocks, cohorts=cohorts)
    cfg = replace(ALL_JUDGED, bootstrap_seed=seed)
    decision = evaluate_gate(GateInput(c, i, OK_PARITY, 1.0, tables.candidate, tables.incumbent, paired), cfg)
    assert decision.verdict == "pass" and all(check.passed for check in decision.checks)
    assert [check.name for check in decision.checks] == list(check_names(tables.candidate))
    metric_checks = [check for check in decision.checks
                     if check.name in ("recall", "false_alarm_rate") or check.name.startswith("cohort_")]
    assert len(metric_checks) == 2 + 2 * len(tables.candidate)
    for check in metric_checks:
        assert check.value == 0.0
        assert (check.ci_low, check.ci_high) == (0.0, 0.0) or (math.isnan(check.ci_low) and math.isnan(check.ci_high))
    json.dumps(decision.to_dict(), allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(slices())
def test_the_bootstrap_is_paired_and_within_bounds(case: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                float]) -> None:
    y, s, cohorts, blocks, t = case
    flipped = paired_slice(y, s, 1.0 - s, (t, t), blocks=blocks, cohorts=cohorts)
    boot = block_bootstrap(flipped, resamples=100, seed=0)
    swapped = block_bootstrap(paired_slice(y, 1.0 - s, s, (t, t), blocks=blocks, cohorts=cohorts), resamples=100)
    for a, b in ((boot.overall.recall_drop, swapped.overall.recall_drop), (boot.overall.far_rise,
                                                                           swapped.overall.far_rise)):
        assert np.array_equal(a, -b, equal_nan=True)  # same draws for both models: swapping them negates
        assert np.all(np.isnan(a) | (np.abs(a) <= 1.0))
    assert boot.overall.positive_blocks == len(set(blocks[y == 1].tolist()))
    assert sum(p.positive_blocks for p in boot.cohorts.values()) >= boot.overall.positive_blocks


def test_doctests() -> None:
    import doctest

    import hub.gate.bootstrap

    assert doctest.testmod(hub.gate.bootstrap).failed == 0

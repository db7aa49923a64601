"""The evaluation gate: golden verdicts on seeded slices and laws over random metrics.

The golden slices resample blocks (the paired block bootstrap); the laws over random metrics judge point
estimates (no per-window slice). Block-specific goldens and laws are in test_gate_bootstrap.py."""

from __future__ import annotations

import doctest
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hub.gate.checks
import hub.gate.verdict
from hub.gate.verdict import (
    GateConfig,
    GateDecision,
    GateInput,
    ParityNumbers,
    SliceMetrics,
    check_names,
    evaluate_gate,
    metrics_on_slice,
    paired_slice,
)

OK_PARITY = ParityNumbers(max_abs_diff=2e-7, label_flips=0, passed=True)
COHORTS = ("site-a/pump", "site-b/pump", "site-b/fan")


def _slice(seed: int = 7, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a fair model's scores (recall ≈ 0.8) and cohorts: 10 % faults, three cohorts (45/45/10 %)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    scores = np.clip(np.where(y == 1, rng.normal(0.65, 0.18, n), rng.normal(0.2, 0.12, n)), 0.0, 1.0)
    cohorts = rng.choice(COHORTS, size=n, p=[0.45, 0.45, 0.1])
    return y, scores, cohorts


def _input(
    y: np.ndarray,
    cand: np.ndarray,
    inc: np.ndarray,
    cohorts: np.ndarray | None,
    *,
    latency: float = 1.0,
    parity: ParityNumbers = OK_PARITY,
    per_window: bool = True,
) -> GateInput:
    """Both models on the slice; per window in blocks of 30 consecutive rows unless `per_window` is False."""
    c, i, tables = metrics_on_slice(y, cand, inc, (0.5, 0.5), cohorts)
    blocks = (np.arange(y.size) // 30).astype(str)
    paired = paired_slice(y, cand, inc, (0.5, 0.5), blocks=blocks, cohorts=cohorts) if per_window else None
    return GateInput(c, i, parity, latency, tables.candidate, tables.incumbent, paired)


def test_candidate_equal_to_incumbent_passes() -> None:
    y, s, cohorts = _slice()
    decision = evaluate_gate(_input(y, s, s, cohorts))
    assert decision.verdict == "pass" and decision.passed and decision.reasons == ()
    assert [c.name for c in decision.checks] == list(check_names(COHORTS))
    assert decision.check("recall").value == 0.0 and decision.check("false_alarm_rate").value == 0.0
    assert decision.candidate.n_pos == int(y.sum()) == 300
    record = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert record["verdict"] == "pass" and len(record["checks"]) == len(decision.checks)


def test_sabotaged_candidate_fails_on_recall() -> None:
    y, s, cohorts = _slice()
    sabotaged = np.where(y == 1, s * 0.6, s)  # most faults now score under the threshold
    decision = evaluate_gate(_input(y, sabotaged, s, cohorts))
    assert decision.verdict == "fail" and not decision.passed
    recall = decision.check("recall")
    assert not recall.passed and recall.value > 0.5 and recall.limit == 0.02
    assert decision.check("false_alarm_rate").passed
    assert decision.reasons[0].startswith("recall: candidate")


def test_false_alarm_regression_beyond_tolerance_fails() -> None:
    y, s, cohorts = _slice()
    rng = np.random.default_rng(1)
    noisy = np.where((y == 0) & (rng.random(y.size) < 0.03), 0.9, s)  # ~3 % of healthy windows now alarm
    decision = evaluate_gate(_input(y, noisy, s, cohorts))
    far = decision.check("false_alarm_rate")
    assert decision.verdict == "fail" and not far.passed
    assert 0.02 < far.value < 0.04 and decision.check("recall").passed


def test_one_cohort_regressing_fails_even_when_overall_improves() -> None:
    y, s, cohorts = _slice()
    improved = np.where(y == 1, np.maximum(s, 0.6), np.minimum(s, 0.4))  # perfect overall...
    worse = np.where((cohorts == "site-b/fan") & (y == 1), 0.1, improved)  # ...except site-b fans miss faults
    decision = evaluate_gate(_input(y, worse, s, cohorts))
    assert decision.check("recall").passed and decision.check("false_alarm_rate").passed
    assert decision.candidate.false_alarm_rate < decision.incumbent.false_alarm_rate
    assert not decision.check("cohort_recall:site-b/fan").passed
    assert decision.check("cohort_recall:site-a/pump").passed
    assert decision.verdict == "fail"
    assert [r.split(":")[0] for r in decision.reasons] == ["cohort_recall"]


def test_parity_failure_fails() -> None:
    y, s, cohorts = _slice()
    bad = ParityNumbers(max_abs_diff=0.03, label_flips=4, passed=False)
    decision = evaluate_gate(_input(y, s, s, cohorts, parity=bad))
    assert decision.verdict == "fail"
    failed = {c.name for c in decision.checks if not c.passed}
    assert failed == {"parity_abs_diff", "parity_label_flips", "parity_report"}


def test_latency_over_budget_fails() -> None:
    y, s, cohorts = _slice()
    decision = evaluate_gate(_input(y, s, s, cohorts, latency=12.5))
    check = decision.check("latency_p99_ms")
    assert decision.verdict == "fail" and not check.passed and (check.value, check.limit) == (12.5, 5.0)


def test_tiny_slice_is_insufficient_data_whatever_the_metrics() -> None:
    y, s, cohorts = _slice(n=120)
    for cand in (s, np.zeros_like(s)):  # as good, or useless: the slice cannot tell
        decision = evaluate_gate(_input(y, cand, s, cohorts))
        assert decision.verdict == "insufficient_data" and not decision.passed
        assert decision.reasons[0].startswith("min_positives")
        sample_checks = {"min_positives", "min_negatives", "min_positive_blocks", "min_negative_blocks"}
        assert {r.split(":")[0] for r in decision.reasons} <= sample_checks


def test_insufficient_data_does_not_hide_a_broken_artifact() -> None:
    y, s, cohorts = _slice(n=120)
    decision = evaluate_gate(_input(y, s, s, cohorts, latency=99.0))
    assert decision.verdict == "fail" and decision.reasons[0].startswith("latency_p99_ms")


def test_small_cohorts_are_recorded_but_not_judged() -> None:
    y, s, _ = _slice()
    cohorts = np.where(np.arange(y.size) < 40, "tiny", "big")
    worse = np.where((cohorts == "tiny") & (y == 1), 0.0, s)
    decision = evaluate_gate(_input(y, worse, s, cohorts))
    tiny = decision.check("cohort_recall:tiny")
    assert tiny.passed and tiny.detail.startswith("not judged") and decision.verdict == "pass"
    record = {c["name"]: c for c in decision.to_dict()["checks"]}
    assert record["cohort_recall:tiny"]["value"] is None  # NaN → None in the record


def test_models_scored_on_different_slices_fail() -> None:
    y, s, cohorts = _slice()
    c, i, tables = metrics_on_slice(y, s, s, (0.5, 0.5), cohorts)
    inp = GateInput(c, replace(i, n_neg=i.n_neg - 1), OK_PARITY, 1.0, tables.candidate, {})
    decision = evaluate_gate(inp)
    failed = [c.name for c in decision.checks if not c.passed]
    assert decision.verdict == "fail" and failed[0] == "same_slice"
    assert {f"same_slice:{name}" for name in COHORTS} <= set(failed)


def test_metrics_on_slice_uses_each_models_threshold() -> None:
    y, s, _ = _slice()
    cand, inc, tables = metrics_on_slice(y, s, s, (0.3, 0.99), None)
    assert cand.recall > 0.9 and inc.recall < 0.1 and tables.candidate == {} == tables.incumbent
    with pytest.raises(ValueError, match="one score per label"):
        metrics_on_slice(y, s[:-1], s, (0.5, 0.5))


def test_without_a_per_window_slice_the_gate_judges_point_estimates() -> None:
    y, s, cohorts = _slice()
    rng = np.random.default_rng(1)
    noisy = np.where((y == 0) & (rng.random(y.size) < 0.03), 0.9, s)
    decision = evaluate_gate(_input(y, noisy, s, cohorts, per_window=False))
    assert decision.verdict == "fail" and decision.bootstrap is None
    far = decision.check("false_alarm_rate")
    assert math.isnan(far.ci_low) and far.blocks is None and "interval" not in far.detail
    assert decision.check("min_positive_blocks").detail.startswith("not judged")


def test_the_record_carries_the_intervals_and_how_they_were_made() -> None:
    y, s, cohorts = _slice()
    record = json.loads(json.dumps(evaluate_gate(_input(y, s, s, cohorts)).to_dict(), allow_nan=False))
    assert record["bootstrap"] == {"method": "paired_block", "resamples": 1000, "seed": 0, "alpha": 0.05,
                                   "interval_level": 0.9, "n_blocks": 100, "positive_blocks": 93,
                                   "negative_blocks": 100}
    checks = {c["name"]: c for c in record["checks"]}
    assert (checks["recall"]["ci_low"], checks["recall"]["ci_high"], checks["recall"]["blocks"]) == (0.0, 0.0, 93)
    assert checks["parity_report"]["ci_low"] is None and checks["parity_report"]["blocks"] is None


@pytest.mark.parametrize(("field", "value"), [("max_recall_drop", -0.1), ("alpha", 0.0), ("alpha", 0.6),
                                              ("bootstrap_resamples", 10), ("min_positive_blocks", -1)])
def test_bad_config_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        GateConfig(**{field: value})


def test_doctests() -> None:
    assert doctest.testmod(hub.gate.verdict).failed == 0
    results = doctest.testmod(hub.gate.checks)
    assert results.failed == 0 and results.attempted >= 4


# --- properties ------------------------------------------------------------------------------------------

rates = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def metrics(draw: st.DrawFn, n_pos: int, n_neg: int) -> SliceMetrics:
    auc = draw(st.none() | rates)
    return SliceMetrics(draw(rates), draw(rates), draw(rates), draw(rates), auc, n_pos, n_neg)


def _no_worse(draw: st.DrawFn, m: SliceMetrics) -> SliceMetrics:
    """A candidate at least as good as `m` on every metric (higher is better, except false alarms)."""

    def up(v: float) -> float:
        return draw(st.floats(min_value=v, max_value=1.0))

    return replace(
        m,
        recall=up(m.recall),
        false_alarm_rate=draw(st.floats(min_value=0.0, max_value=m.false_alarm_rate)),
        precision=up(m.precision),
        f1=up(m.f1),
        roc_auc=None if m.roc_auc is None else up(m.roc_auc),
    )


@st.composite
def better_candidates(draw: st.DrawFn) -> tuple[GateInput, GateConfig]:
    cfg = GateConfig(
        max_recall_drop=draw(st.sampled_from([0.0, 0.02, 0.1])),
        max_far_increase=draw(st.sampled_from([0.0, 0.01])),
        max_cohort_recall_drop=draw(st.sampled_from([0.0, 0.05])),
        max_cohort_far_increase=draw(st.sampled_from([0.0, 0.02])),
    )
    n_pos = draw(st.integers(cfg.min_positives, 5000))
    n_neg = draw(st.integers(cfg.min_negatives, 50_000))
    inc = draw(metrics(n_pos, n_neg))
    names = draw(st.lists(st.sampled_from(["a", "b", "c/d", "e"]), unique=True, max_size=4))
    inc_cohorts = {k: draw(metrics(draw(st.integers(0, n_pos)), draw(st.integers(0, n_neg)))) for k in names}
    parity = ParityNumbers(
        draw(st.floats(min_value=0.0, max_value=cfg.max_parity_abs_diff)),
        draw(st.integers(0, cfg.max_parity_flips)),
        True,
    )
    inp = GateInput(
        candidate=_no_worse(draw, inc),
        incumbent=inc,
        parity=parity,
        latency_p99_ms=draw(st.floats(min_value=0.0, max_value=cfg.latency_budget_ms)),
        candidate_cohorts={k: _no_worse(draw, v) for k, v in inc_cohorts.items()},
        incumbent_cohorts=inc_cohorts,
    )
    return inp, cfg


@settings(max_examples=200, deadline=None)
@given(better_candidates())
def test_a_candidate_no_worse_anywhere_always_passes(case: tuple[GateInput, GateConfig]) -> None:
    inp, cfg = case
    decision = evaluate_gate(inp, cfg)
    assert decision.verdict == "pass", decision.reasons
    assert [c.name for c in decision.checks] == list(check_names(inp.incumbent_cohorts))


@settings(max_examples=200, deadline=None)
@given(better_candidates(), st.data())
def test_every_check_is_listed_and_the_verdict_follows_them(
    case: tuple[GateInput, GateConfig], data: st.DataObject
) -> None:
    inp, cfg = case
    # swap the roles: now the incumbent is no worse than the candidate, and anything may fail
    inp = replace(
        inp,
        candidate=inp.incumbent,
        incumbent=inp.candidate,
        candidate_cohorts=inp.incumbent_cohorts,
        incumbent_cohorts=inp.candidate_cohorts,
        latency_p99_ms=data.draw(st.floats(min_value=0.0, max_value=20.0)),
    )
    decision = evaluate_gate(inp, cfg)
    assert [c.name for c in decision.checks] == list(check_names(inp.incumbent_cohorts))
    assert decision.passed == all(c.passed for c in decision.checks) == (decision.verdict == "pass")
    failed = [c.name for c in decision.checks if not c.passed]
    if decision.verdict == "fail":
        assert sorted(r.split(": ")[0] for r in decision.reasons) == sorted(failed)
    else:
        assert [r.split(": ")[0] for r in decision.reasons] == failed
    json.dumps(decision.to_dict(), allow_nan=False)


def test_recall_gained_buys_a_bounded_rise_in_false_alarms() -> None:
    """A drift fix that catches many more failures may alarm a little more; one that catches nothing more may not."""
    inc = SliceMetrics(recall=0.40, false_alarm_rate=0.003, precision=0.9, f1=0.55, roc_auc=0.8, n_pos=200, n_neg=2000)
    fix = replace(inc, recall=0.75, false_alarm_rate=0.025)  # +0.35 recall, +0.022 FAR
    same_recall = replace(fix, recall=0.40)
    parity = ParityNumbers(max_abs_diff=2e-7, label_flips=0, passed=True)
    judge = lambda cand, **kw: evaluate_gate(GateInput(cand, inc, parity, latency_p99_ms=1.0), GateConfig(**kw))  # noqa: E731
    passed = judge(fix)
    assert passed.verdict == "pass"
    assert passed.check("false_alarm_rate").limit == pytest.approx(0.01 + 0.1 * 0.35)
    assert judge(same_recall).verdict == "fail"  # nothing gained: the plain 0.01
    assert judge(fix, far_per_recall_gain=0.0).verdict == "fail"  # the trade turned off
    assert judge(replace(fix, false_alarm_rate=0.06)).verdict == "fail"  # +0.057 is more than 0.045 buys


def test_false_alarms_removed_buy_a_capped_recall_drop() -> None:
    """An incumbent alarming on most healthy windows (C-MAPSS FD002 under an FD001 model) can be replaced by a
    model that alarms sensibly, but not by one that never alarms."""
    inc = SliceMetrics(recall=0.98, false_alarm_rate=0.60, precision=0.1, f1=0.2, roc_auc=0.8, n_pos=200, n_neg=2000)
    sensible = replace(inc, recall=0.80, false_alarm_rate=0.03)  # -0.18 recall, -0.57 FAR
    silent = replace(inc, recall=0.0, false_alarm_rate=0.0)
    parity = ParityNumbers(max_abs_diff=2e-7, label_flips=0, passed=True)
    judge = lambda cand, **kw: evaluate_gate(GateInput(cand, inc, parity, latency_p99_ms=1.0), GateConfig(**kw))  # noqa: E731
    passed = judge(sensible)
    assert passed.verdict == "pass"
    assert passed.check("recall").limit == pytest.approx(0.02 + 0.25)  # 0.5 × 0.57 capped at 0.25
    assert judge(silent).verdict == "fail"
    assert judge(sensible, recall_per_far_reduction=0.0).verdict == "fail"


def test_recall_is_not_bought_from_a_working_incumbent_by_default() -> None:
    """The issue's case: a candidate catching 0.598 of the failures against 0.641 whose false alarms fell. Under
    the default trade (`alarm_flood`) the incumbent does not flood, so the candidate fails, significance judged on
    a real block bootstrap; `always` (the old rule) passes it; the decision records which rule applied."""
    y, _, _ = _slice(seed=11, n=4000)
    blocks = (np.arange(y.size) // 30).astype(str)
    rng = np.random.default_rng(5)
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    inc_hit = np.zeros(y.size, bool)
    inc_hit[pos] = rng.random(pos.size) < 0.641
    inc_hit[neg] = rng.random(neg.size) < 0.12
    cand_hit = inc_hit.copy()
    missed = rng.choice(np.flatnonzero(inc_hit & (y == 1)), int(0.043 * pos.size), replace=False)
    cand_hit[missed] = False  # the candidate misses failures the incumbent caught
    cand_hit[neg] = rng.random(neg.size) < 0.02  # and alarms far less
    s_cand, s_inc = cand_hit.astype(float), inc_hit.astype(float)
    cand, inc, _ = metrics_on_slice(y, s_cand, s_inc, (0.5, 0.5))
    assert inc.false_alarm_rate < 0.3 and cand.recall < inc.recall - 0.03
    parity = ParityNumbers(max_abs_diff=2e-7, label_flips=0, passed=True)
    paired = paired_slice(y, s_cand, s_inc, (0.5, 0.5), blocks=blocks)

    def judge(**kw: object) -> GateDecision:
        return evaluate_gate(GateInput(cand, inc, parity, latency_p99_ms=1.0, paired=paired), GateConfig(**kw))

    safe = judge()
    assert safe.verdict == "fail" and not safe.check("recall").passed
    assert safe.check("recall").limit == pytest.approx(0.02) and safe.trade is not None
    assert (safe.trade.recall_trade, safe.trade.applied, safe.trade.recall_bought) == ("alarm_flood", False, 0.0)
    assert "does not flood" in safe.trade.reason
    assert judge(recall_trade="never").verdict == "fail"
    old = judge(recall_trade="always")
    assert old.verdict == "pass" and old.trade is not None and old.trade.applied and old.trade.recall_bought > 0.02
    assert json.loads(json.dumps(safe.to_dict()))["trade"]["recall_trade"] == "alarm_flood"
    with pytest.raises(ValueError, match="recall_trade"):
        GateConfig(recall_trade="sometimes")  # type: ignore[arg-type]


def test_a_flooding_incumbent_still_trades_by_default_but_never_when_told() -> None:
    inc = SliceMetrics(recall=0.98, false_alarm_rate=0.60, precision=0.1, f1=0.2, roc_auc=0.8, n_pos=200, n_neg=2000)
    sensible = replace(inc, recall=0.80, false_alarm_rate=0.03)
    parity = ParityNumbers(max_abs_diff=2e-7, label_flips=0, passed=True)
    default = evaluate_gate(GateInput(sensible, inc, parity, latency_p99_ms=1.0))
    assert default.verdict == "pass" and default.trade is not None and default.trade.applied
    never = evaluate_gate(GateInput(sensible, inc, parity, latency_p99_ms=1.0), GateConfig(recall_trade="never"))
    assert never.verdict == "fail" and never.trade is not None and not never.trade.applied

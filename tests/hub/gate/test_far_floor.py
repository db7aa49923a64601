"""The gate after drift: false alarms measured from the incumbent's rate before it drifted, never below its own.

The slice: a drifted incumbent that went blind (few false alarms, little recall) and a fix whose false alarms
are back at the incumbent's pre-drift rate, in one cohort that had a high rate before (site-b) and one that
had a low one (site-a)."""

from __future__ import annotations

import numpy as np

from hub.gate.verdict import (
    FarFloor,
    GateConfig,
    GateInput,
    ParityNumbers,
    evaluate_gate,
    metrics_on_slice,
    paired_slice,
)

OK_PARITY = ParityNumbers(max_abs_diff=2e-7, label_flips=0, passed=True)
BEFORE = {"site-a": 0.01, "site-b": 0.04}  # the incumbent's false-alarm rate per site before the drift
N_BLOCKS, BLOCK = 80, 40  # per site: blocks of 40 windows, 10 % faults


def _blind_incumbent_and_a_fix(seed: int = 3) -> GateInput:
    rng = np.random.default_rng(seed)
    parts = []
    for site, far in BEFORE.items():
        n = N_BLOCKS * BLOCK
        y = rng.random(n) < 0.1
        fix = np.where(y, rng.random(n) < 0.75, rng.random(n) < far)  # recall 0.75, false alarms as before
        blind = np.where(y, rng.random(n) < 0.45, rng.random(n) < 0.002)  # drift: recall 0.45, ~no false alarms
        blocks = np.array([f"{site}:{i // BLOCK}" for i in range(n)])
        parts.append((y, fix, blind, np.full(n, site), blocks))
    y, fix, blind, cohorts, blocks = (np.concatenate(p) for p in zip(*parts, strict=True))
    scores = (fix.astype(float), blind.astype(float))
    c, i, tables = metrics_on_slice(y.astype(int), *scores, (0.5, 0.5), cohorts)
    paired = paired_slice(y.astype(int), *scores, (0.5, 0.5), blocks=blocks, cohorts=cohorts)
    return GateInput(c, i, OK_PARITY, 1.0, tables.candidate, tables.incumbent, paired)


def _floor(overall: float | None = 0.022, cohorts: dict[str, float] | None = None) -> FarFloor:
    return FarFloor(version="v1", onset=1000.0, overall=overall, cohorts=BEFORE if cohorts is None else cohorts,
                    negatives={"": 5000, "site-a": 2500, "site-b": 2500})


def test_against_the_blind_incumbent_the_fix_fails_on_the_site_that_alarmed_most() -> None:
    inp = _blind_incumbent_and_a_fix()
    d = evaluate_gate(inp)
    assert d.verdict == "fail"
    assert {r.split(":")[0] + ":" + r.split(":")[1] for r in d.reasons if r.startswith("cohort")} == {
        "cohort_false_alarm_rate:site-b"}
    assert d.check("recall").value < -0.2  # the fix gains recall, the site's false alarms sink it


def test_measured_from_the_rate_before_the_drift_the_fix_passes_and_says_why() -> None:
    inp = _blind_incumbent_and_a_fix()
    d = evaluate_gate(GateInput(**{**inp.__dict__, "far_floor": _floor()}))
    assert d.verdict == "pass", d.reasons
    site_b = d.check("cohort_false_alarm_rate:site-b")
    assert "vs incumbent 0.0400 before its drift" in site_b.detail
    assert site_b.value < 0.02 and site_b.ci_low < 0 < site_b.ci_high  # from 0.04, not from ~0.002
    assert d.to_dict()["checks"]  # JSON-safe with the floor


def test_the_floor_never_tightens_and_can_be_turned_off() -> None:
    inp = _blind_incumbent_and_a_fix()
    low = evaluate_gate(GateInput(**{**inp.__dict__, "far_floor": _floor(0.0, {"site-a": 0.0, "site-b": 0.0})}))
    plain = evaluate_gate(inp)
    assert low.verdict == plain.verdict == "fail"
    assert low.check("false_alarm_rate").value == plain.check("false_alarm_rate").value
    assert "before its drift: 0.0000" in low.check("false_alarm_rate").detail
    off = evaluate_gate(GateInput(**{**inp.__dict__, "far_floor": _floor()}), GateConfig(far_floor_after_drift=False))
    assert off.verdict == "fail" and off.reasons == plain.reasons


def test_a_cohort_without_a_floor_is_judged_against_the_slice() -> None:
    inp = _blind_incumbent_and_a_fix()
    d = evaluate_gate(GateInput(**{**inp.__dict__, "far_floor": _floor(cohorts={"site-a": 0.01})}))
    assert d.verdict == "fail"
    assert [r.split(":")[1] for r in d.reasons] == ["site-b"]


def test_a_fix_that_raises_false_alarms_beyond_the_pre_drift_rate_still_fails() -> None:
    inp = _blind_incumbent_and_a_fix()
    no_trade = GateConfig(far_per_recall_gain=0.0)  # the floor alone, without recall buying false alarms
    fair = evaluate_gate(GateInput(**{**inp.__dict__, "far_floor": _floor()}), no_trade)
    assert fair.verdict == "pass", fair.reasons
    low = _floor(0.005, {"site-a": 0.002, "site-b": 0.005})  # the fix alarms 8x more than before on site-b
    d = evaluate_gate(GateInput(**{**inp.__dict__, "far_floor": low}), no_trade)
    assert d.verdict == "fail"
    assert any(r.startswith("cohort_false_alarm_rate:site-b") for r in d.reasons)


def test_the_cli_says_the_false_alarms_were_measured_from_before_the_drift() -> None:
    from dataclasses import asdict

    from hub.app.cli import gate_lines

    inp = _blind_incumbent_and_a_fix()
    record = {**evaluate_gate(GateInput(**{**inp.__dict__, "far_floor": _floor()})).to_dict(),
              "far_floor": asdict(_floor())}
    head = gate_lines(record)[0]
    assert "rate before its drift (where higher): overall 0.0220, site-a 0.0100, site-b 0.0400" in head
    assert "before its drift" not in gate_lines(evaluate_gate(inp).to_dict())[0]

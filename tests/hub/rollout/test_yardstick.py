"""The drift-aware yardstick: a drifted control makes the candidate's own reference the measure of its anomaly
rate and score distribution; device failures (NaN, errors, refusals) fail whatever the yardstick."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from hub.rollout import (
    ControlTrust,
    Decision,
    Evidence,
    Expectation,
    RolloutError,
    RolloutPlan,
    RolloutState,
    Yardstick,
    next_step,
    start,
)
from hub.rollout.evidence import Source
from hub.rollout.traffic import Provenance, Served, expected_on_traffic, same_features
from shared.manifest import MANIFEST_FILE, load_manifest
from tests.hub.rollout.factories import T0, make_plan, scoring

CANARY = ("fan-2", "press-1", "pump-4")
EDGES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
# The candidate, retrained on the drifted fleet, scores higher: a fifth of its windows reach the 0.5 threshold.
HIGH = (0.30, 0.20, 0.10, 0.10, 0.10, 0.08, 0.05, 0.04, 0.02, 0.01)
EXPECTED = Expectation.from_reference(EDGES, [round(10_000 * p) for p in HIGH], threshold=0.5)
DRIFTED = ControlTrust.from_drift("fleet@v1", "drift", at=T0 - 600, detail="drift in 4 of 12 features: temp.mean")
STEADY = ControlTrust.from_drift("fleet@v1", "no_drift", at=T0 - 600, detail="no drift: largest PSI 0.04")
AFTER = T0 + 1200  # the canary's min_duration_s


def canary_plan(expectation: Expectation | None = EXPECTED) -> tuple[RolloutPlan, RolloutState]:
    plan = make_plan(shadow=False, expectation=expectation)
    assert plan.stage("canary").devices == CANARY
    state, _ = start(plan, T0)
    return plan, state


def drift_fix_evidence(plan: RolloutPlan, *, nan: int = 0, rate: float = 0.2) -> dict[str, Evidence]:
    """The canary alarms on a fifth of its windows, as its reference expects; the drifted incumbent on the rest
    of the fleet hardly alarms at all (0.5%): ×20 apart."""
    out = {d: Evidence(incumbent=scoring(200, 0.005)) for d in plan.fleet if d not in CANARY}
    for d in CANARY:
        out[d] = Evidence(loaded=True, candidate=scoring(200, rate, shape=HIGH, nan=nan if d == "pump-4" else 0))
    return out


def test_expectation_from_a_reference() -> None:
    assert EXPECTED.anomaly_rate == pytest.approx(0.2)
    assert EXPECTED.score_hist == tuple(round(10_000 * p) for p in HIGH)
    # a threshold inside a bin counts that bin in proportion: half of [0.4, 0.5) lies at or above 0.45
    assert Expectation.from_reference(EDGES, [round(10_000 * p) for p in HIGH], 0.45).anomaly_rate == pytest.approx(
        0.25)
    assert Expectation.from_reference([], [7], 0.3).anomaly_rate == pytest.approx(0.7)  # one bin over [0, 1]
    with pytest.raises(RolloutError, match="len"):
        Expectation.from_reference(EDGES, [1, 2], 0.5)
    with pytest.raises(RolloutError, match="not all zero"):
        Expectation.from_reference(EDGES, [0] * 10, 0.5)


def test_control_trust_from_drift_verdicts() -> None:
    assert not DRIFTED.trusted and DRIFTED.reason == (
        f"latest drift verdict on fleet@v1 at {T0 - 600:.0f}: drift in 4 of 12 features: temp.mean")
    assert STEADY.trusted and ControlTrust.from_drift("fleet@v1", None).trusted
    assert ControlTrust.from_drift("fleet@v1", "insufficient_data").trusted


def test_drifted_control_judges_a_self_consistent_candidate_against_its_own_reference() -> None:
    plan, state = canary_plan()
    state, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED)
    assert (d.kind, d.stage) == ("advance", "fleet"), d.reason
    assert d.yardstick == Yardstick(
        "expectation", f"control not trusted ({DRIFTED.reason}): judged against the candidate's own reference",
        EXPECTED)
    assert d.numbers["anomaly_rate_ratio"] == pytest.approx(1.0)
    assert d.numbers["expected_anomaly_rate"] == pytest.approx(0.2)
    assert d.numbers["control_anomaly_rate"] == pytest.approx(0.005)  # shown, not judged on
    assert d.numbers["score_psi"] == pytest.approx(0.0, abs=1e-3)


def test_trusted_control_still_fails_a_twentyfold_anomaly_rate() -> None:
    plan, state = canary_plan()
    for trust in (STEADY, None):
        _, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=trust)
        assert d.kind == "rollback"
        assert "anomaly rate 0.2000 vs control 0.0050 (×20.50): beyond ×5" in d.reason
        assert d.yardstick is not None and d.yardstick.basis == "control"


@pytest.mark.parametrize("trust", [DRIFTED, STEADY], ids=["drifted", "steady"])
def test_nan_scores_fail_whatever_the_yardstick(trust: ControlTrust) -> None:
    plan, state = canary_plan()
    _, d = next_step(plan, state, drift_fix_evidence(plan, nan=2), T0 + 60, trust=trust)
    assert d.kind == "rollback" and d.reason.startswith("canary failed: pump-4: 2 NaN scores")


def test_the_own_reference_is_a_yardstick_not_a_free_pass() -> None:
    quiet = (0.50, 0.30, 0.10, 0.05, 0.03, 0.01, 0.005, 0.003, 0.001, 0.001)  # 2% of windows at >= 0.5
    plan, state = canary_plan(Expectation.from_reference(EDGES, [round(10_000 * p) for p in quiet], threshold=0.5))
    _, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED)  # alarms on a fifth
    assert d.kind == "rollback" and "anomaly rate 0.2000 vs reference 0.0200 (×8.20): beyond ×5" in d.reason
    assert d.yardstick is not None and d.yardstick.basis == "expectation"


def test_fewer_alarms_than_the_reference_hold_until_the_timeout_then_roll_back() -> None:
    """The reference is a long-run mix: a fleet healthier right now alarms less. Held on, not rolled back at once;
    a stage that stays that quiet until its timeout is rolled back all the same."""
    plan, state = canary_plan()
    quiet = drift_fix_evidence(plan, rate=0.01)
    state, d = next_step(plan, state, quiet, AFTER, trust=DRIFTED)
    assert d.kind == "wait", d.reason
    assert "anomaly rate 0.0100 vs reference 0.2000 (×0.07): beyond ×5, but fewer alarms" in d.reason
    timeout = T0 + plan.stage("canary").policy.timeout_s
    _, d = next_step(plan, state, quiet, timeout, trust=DRIFTED)
    assert d.kind == "rollback" and d.reason.startswith("canary timed out"), d.reason
    assert "fewer alarms than a long-run reference" in d.reason


def test_a_drifted_control_without_an_expectation_is_still_the_yardstick_and_says_so() -> None:
    plan, state = canary_plan(expectation=None)
    _, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED)
    assert d.kind == "rollback"
    assert d.yardstick is not None and d.yardstick.basis == "control"
    assert d.yardstick.reason.endswith("but the plan has no expectation of the candidate: judged against the control "
                                       "anyway")


def test_shadow_disagreement_with_a_drifted_incumbent_does_not_hold() -> None:
    plan = make_plan(expectation=EXPECTED)  # shadow on the canary devices first
    state, _ = start(plan, T0)
    ev = {d: Evidence(incumbent=scoring(200, 0.005)) for d in plan.fleet}
    for d in CANARY:  # shadow reports carry no histogram; the two models disagree on a fifth of the windows
        ev[d] = Evidence(loaded=True, candidate=scoring(200, 0.2, shape=()), incumbent=scoring(200, 0.005),
                         disagreements=40)
    _, held = next_step(plan, state, ev, T0 + 600)
    assert held.kind == "rollback"  # against the incumbent, ×20 alarms
    _, d = next_step(plan, state, ev, T0 + 600, trust=DRIFTED)
    assert (d.kind, d.stage) == ("advance", "canary"), d.reason
    assert d.numbers["disagreement_rate"] == pytest.approx(0.2)


def test_the_yardstick_and_expectation_survive_serialisation() -> None:
    plan, state = canary_plan()
    _, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED)
    assert RolloutPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert Decision.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    old = {k: v for k, v in d.to_dict().items() if k != "yardstick"}  # records made before yardsticks
    assert Decision.from_dict(old).yardstick is None
    assert RolloutPlan.from_dict({k: v for k, v in plan.to_dict().items() if k != "expectation"}).expectation is None


# -- the candidate's scores on the stage's traffic (`hub.rollout.traffic`) ----------------------------------------
QUIET = Expectation.from_reference(EDGES, [round(10_000 * p) for p in
                                           (0.50, 0.30, 0.10, 0.05, 0.03, 0.01, 0.005, 0.003, 0.001, 0.001)], 0.5)


def on_traffic(source: Source, rate: float = 0.2) -> Expectation:
    """What the hub measured scoring the candidate on the stage's traffic: a fifth of its windows alarm."""
    return Expectation(rate, tuple(round(1_000 * p) for p in HIGH), source, vectors=260, samples=60,
                       devices=CANARY, since=T0, until=AFTER, data_from=T0 - 30, data_to=AFTER - 5)


def test_the_stage_traffic_estimate_weighs_the_served_alarms_and_the_random_slice() -> None:
    prov = Provenance("stage", CANARY, T0, AFTER)
    v1 = Served("v1", windows=100, anomalies=0, alarm_scores=np.empty(0), quiet_scores=np.array([0.05, 0.65]))
    # v2 alarmed on 40 of its 200 windows: 20 of those vectors held (all alarm for the hub too); 40 random quiet ones
    v2 = Served("v2", 200, 40, np.full(20, 0.9), np.array([0.05] * 39 + [0.55]), alarm_random=2)
    e = expected_on_traffic([v1, v2], EDGES, 0.5, prov, min_samples=40)
    assert e is not None and (e.source, e.devices, e.since, e.until) == ("stage", CANARY, T0, AFTER)
    assert e.anomaly_rate == pytest.approx((50 + 40 + 160 / 40) / 300)  # v1: half of 100; v2: 40 + 1/40 of 160
    assert e.score_hist == (50 + 156, 0, 0, 0, 0, 4, 50, 0, 0, 40)
    assert (e.vectors, e.samples) == (62, 44)
    assert expected_on_traffic([v1, v2], EDGES, 0.5, prov, min_samples=45) is None  # too few random vectors
    # alarms counted but none of their vectors held: that version's windows cannot be estimated and are left out
    lost = Served("v2", 200, 40, np.empty(0), np.array([0.05] * 40))
    only_v1 = expected_on_traffic([v1, lost], EDGES, 0.5, prov, min_samples=1)
    assert only_v1 is not None and only_v1.anomaly_rate == pytest.approx(0.5) and only_v1.vectors == 2


def test_a_canary_on_its_own_traffic_passes_where_the_reference_rolled_it_back() -> None:
    plan, state = canary_plan(QUIET)  # its reference: 2% alarms; the canary's engines near their end: 20%
    _, before = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED)
    assert before.kind == "rollback" and "vs reference 0.0200" in before.reason
    traffic = on_traffic("stage")
    _, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED, expectation=traffic)
    assert (d.kind, d.stage) == ("advance", "fleet"), d.reason
    assert d.yardstick == Yardstick("expectation", f"control not trusted ({DRIFTED.reason}): judged against the "
                                    "candidate's scores on the traffic of its stage's devices during the stage: 260 "
                                    "feature vectors (60 of the random slice) from 3 device(s)", traffic)
    assert d.numbers["expected_vectors"] == 260 and d.numbers["anomaly_rate_ratio"] == pytest.approx(1.0)
    _, trusted = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=STEADY, expectation=traffic)
    assert trusted.kind == "rollback" and trusted.yardstick is not None and trusted.yardstick.basis == "control"


def test_far_fewer_alarms_than_its_own_traffic_fail_than_the_fleets_hold() -> None:
    """The same devices' traffic of the same period is no long-run mix: a candidate that alarms far less on the
    devices than at the hub on their vectors does not do there what the model does; other devices' traffic may
    simply be older or younger machines."""
    plan, state = canary_plan(QUIET)
    quiet = drift_fix_evidence(plan, rate=0.01)
    _, own = next_step(plan, state, quiet, AFTER, trust=DRIFTED, expectation=on_traffic("stage"))
    assert own.kind == "rollback" and "anomaly rate 0.0100 vs traffic 0.2000 (×0.07): beyond ×5" in own.reason
    _, fleet = next_step(plan, state, quiet, AFTER, trust=DRIFTED, expectation=on_traffic("fleet"))
    assert fleet.kind == "wait" and "fewer alarms than other devices' traffic is held on" in fleet.reason


def test_a_traffic_yardstick_survives_serialisation() -> None:
    plan, state = canary_plan()
    _, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED, expectation=on_traffic("fleet"))
    assert Decision.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    assert d.yardstick is not None and d.yardstick.to_dict()["expectation"]["source"] == "fleet"
    assert "source" not in EXPECTED.to_dict()  # a reference is stored as before


def test_only_vectors_of_the_candidates_features_are_scored(initial_model_dir: Path) -> None:
    manifest = load_manifest((initial_model_dir / MANIFEST_FILE).read_bytes())
    child = msgspec.structs.replace(manifest, version="v2", parent_version="v1", threshold=0.4)
    assert same_features(manifest, child)  # a retrain keeps its parent's window and regime statistics
    other = msgspec.structs.replace(manifest, window=msgspec.structs.replace(manifest.window, step=2))
    assert not same_features(manifest, other)


def test_the_cli_shows_what_a_traffic_yardstick_measured() -> None:
    from hub.app.render import rollout_text

    plan, state = canary_plan()
    _, d = next_step(plan, state, drift_fix_evidence(plan), AFTER, trust=DRIFTED, expectation=on_traffic("stage"))
    text = rollout_text({"id": "r-1", "candidate": "v2", "incumbent": "v1", "status": "running", "stage": "fleet",
                         "decision": d.to_dict(), "limits": {}, "stages": [], "history": []})
    assert "judged against the expectation: control not trusted" in text
    assert ("expected  anomaly rate 0.200 on 260 vectors from fan-2, press-1, pump-4, received 1970-01-01T00:16:40Z to "
            "1970-01-01T00:36:40Z (windows of data time 1970-01-01T00:16:10Z to 1970-01-01T00:36:35Z)") in text

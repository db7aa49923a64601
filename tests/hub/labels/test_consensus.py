import itertools

import pytest

from hub.labels.consensus import (
    ReliabilityPrior,
    annotator_agreement,
    consensus,
    flagged,
    peer_agreement,
    reliabilities,
    tally,
    vote_weight,
)
from hub.labels.signals import SIGNAL_WEIGHTS, SIGNALS, TRAINABLE_SIGNALS, signal_weight
from hub.labels.types import Vote
from shared.messages import Label, Signal


def v(
    aid: str, tech: str, label: Label, signal: Signal = "confirmed", confidence: float = 1.0, trace: str = "t1"
) -> Vote:
    return Vote(aid, trace, tech, label, signal, confidence)


def test_signal_weights_are_ranked_as_documented() -> None:
    assert dict(SIGNAL_WEIGHTS) == {
        "confirmed": 1.0,
        "correction": 1.0,
        "escalation": 0.4,
        "rating": 0.16,
        "thumbs": 0.064,
        "implicit": 0.0256,
    }
    assert list(SIGNALS) == list(SIGNAL_WEIGHTS)
    assert sorted(TRAINABLE_SIGNALS) == ["confirmed", "correction", "escalation", "rating"]
    with pytest.raises(ValueError, match="unknown signal"):
        signal_weight("vibes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("upper", "lower"),
    [("confirmed", "escalation"), ("escalation", "rating"), ("rating", "thumbs"), ("thumbs", "implicit")],
)
def test_a_rung_outweighs_one_vote_from_below_but_not_two(upper: Signal, lower: Signal) -> None:
    one = tally([v("a1", "ann", "fault", upper), v("a2", "ben", "no_fault", lower)])
    two = tally([v("a1", "ann", "fault", upper), v("a2", "ben", "no_fault", lower), v("a3", "cy", "no_fault", lower)])
    assert one.label == "fault"
    assert one.confidence == pytest.approx(1 / 1.4)
    assert two.label is None
    assert two.confidence == pytest.approx(1 / 1.8)


def test_confirmed_fault_beats_two_thumbs_no_fault() -> None:
    c = tally([v("a1", "ann", "fault"), v("a2", "ben", "no_fault", "thumbs"), v("a3", "cy", "no_fault", "thumbs")])
    assert (c.trace_id, c.label, c.n_votes) == ("t1", "fault", 3)
    assert (c.weight_fault, c.weight_no_fault) == (1.0, 0.128)
    assert c.confidence == pytest.approx(1.0 / 1.128, abs=1e-15)


def test_two_confirmed_disagreeing_equally_is_a_conflict() -> None:
    c = tally([v("a1", "ann", "fault"), v("a2", "ben", "no_fault")])
    assert (c.label, c.confidence, c.conflict) == (None, 0.5, True)
    # A tie is a conflict even at the loosest threshold.
    assert tally([v("a1", "ann", "fault"), v("a2", "ben", "no_fault")], threshold=0.5).conflict


def test_confidence_and_reliability_scale_a_vote() -> None:
    assert vote_weight(v("a1", "ann", "fault", "escalation", 0.5), reliability=1.25) == 0.25
    votes = [v("a1", "ann", "fault", confidence=0.5), v("a2", "ben", "no_fault", "escalation")]
    assert tally(votes).label is None  # 0.5 vs 0.4
    assert tally(votes, reliability={"ann": 2.0}).label == "fault"  # 1.0 vs 0.4
    assert tally(votes, threshold=0.5).label == "fault"


def test_no_weight_is_no_consensus() -> None:
    c = tally([v("a1", "ann", "fault", confidence=0.0)])
    assert (c.label, c.confidence, c.weight_fault) == (None, 0.0, 0.0)


def test_tally_refuses_mixed_traces_empty_input_and_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="exactly one trace"):
        tally([v("a1", "ann", "fault"), v("a2", "ann", "fault", trace="t2")])
    with pytest.raises(ValueError, match="exactly one trace"):
        tally([])
    for threshold in (0.49, 1.01):
        with pytest.raises(ValueError, match="threshold"):
            tally([v("a1", "ann", "fault")], threshold=threshold)


def test_prior_multiplier_golden() -> None:
    prior = ReliabilityPrior(mean=0.8, strength=4.0)
    assert prior.multiplier(0, 0) == 1.0
    assert prior.multiplier(3, 3) == pytest.approx(6.2 / 7 / 0.8)
    assert prior.multiplier(0, 3) == pytest.approx(3.2 / 7 / 0.8)
    assert prior.multiplier(1000, 1000) == pytest.approx(1.25, abs=1e-3)
    with pytest.raises(ValueError):
        prior.multiplier(2, 1)
    for bad in ({"mean": 1.0}, {"mean": 0.0}, {"strength": 0.0}):
        with pytest.raises(ValueError):
            ReliabilityPrior(**bad)


def history() -> list[Vote]:
    """t1–t3: ann, ben, cy confirm a fault, zed escalates "no fault"; t4: ann's fault vs zed's unsure no-fault."""
    votes = []
    for t in ("t1", "t2", "t3"):
        votes += [v(f"{t}-{tech}", tech, "fault", trace=t) for tech in ("ann", "ben", "cy")]
        votes.append(v(f"{t}-zed", "zed", "no_fault", "escalation", trace=t))
    votes += [v("t4-ann", "ann", "fault", trace="t4"), v("t4-zed", "zed", "no_fault", confidence=0.5, trace="t4")]
    return votes


def test_peer_agreement_golden() -> None:
    pairs = peer_agreement(history())
    # On t1–t3 each confirmer's peers are 2.0 fault vs 0.4 no_fault (share 0.83): agreement.
    assert [pairs[tech, "t1"] for tech in ("ann", "ben", "cy", "zed")] == [(1, 1), (1, 1), (1, 1), (0, 1)]
    # On t4 each one's only peer is the other.
    assert pairs["ann", "t4"] == (0, 1)
    assert pairs["zed", "t4"] == (0, 1)
    assert len(pairs) == 14


def test_reliability_leaves_the_trace_out_and_tips_a_close_call() -> None:
    votes = history()
    rel = reliabilities(votes)
    assert rel["ann", "t4"] == pytest.approx((3.2 + 3) / 7 / 0.8)  # 3 of 3 elsewhere: 1.107
    assert rel["zed", "t4"] == pytest.approx(3.2 / 7 / 0.8)  # 0 of 3 elsewhere: 0.571
    assert rel["ann", "t1"] == pytest.approx((3.2 + 2) / 7 / 0.8)  # t2, t3 agree, t4 disagrees
    # Without reliability t4 is 1.0 vs 0.5: share 0.667, a conflict. With it zed's doubt weighs less.
    assert consensus(votes, prior=None)["t4"].label is None
    t4 = consensus(votes)["t4"]
    assert t4.label == "fault"
    assert t4.weight_fault == pytest.approx(6.2 / 5.6)
    assert t4.weight_no_fault == pytest.approx(0.5 * 3.2 / 5.6)
    assert t4.confidence == pytest.approx(6.2 / (6.2 + 1.6))


def test_a_new_technician_starts_neutral() -> None:
    votes = [*history(), v("t5-new", "new", "no_fault", trace="t5")]
    assert reliabilities(votes)["new", "t5"] == 1.0
    assert consensus(votes)["t5"].weight_no_fault == 1.0


def test_annotator_agreement_golden_and_flags() -> None:
    votes = history()
    got = annotator_agreement(votes, min_compared=4)
    assert [(a.technician_id, a.n_votes, a.n_compared, a.n_agreed, a.rate, a.flagged) for a in got] == [
        ("ann", 4, 4, 3, 0.75, False),
        ("ben", 3, 3, 3, 1.0, False),
        ("cy", 3, 3, 3, 1.0, False),
        ("zed", 4, 4, 0, 0.0, True),
    ]
    expected = [(3.2 + 3) / 8 / 0.8, (3.2 + 3) / 7 / 0.8, (3.2 + 3) / 7 / 0.8, 3.2 / 8 / 0.8]
    assert [a.reliability for a in got] == pytest.approx(expected)
    assert flagged(annotator_agreement(votes, min_compared=4)) == {"zed"}
    # Four comparisons are too few under the default minimum of ten.
    assert flagged(annotator_agreement(votes)) == frozenset()


def test_annotator_agreement_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError):
        annotator_agreement([], flag_below=1.5)
    with pytest.raises(ValueError):
        annotator_agreement([], min_compared=0)


def test_consensus_is_order_invariant_on_a_small_case() -> None:
    votes = history()
    expected = consensus(votes)
    for perm in itertools.islice(itertools.permutations(votes), 0, 200, 7):
        assert consensus(perm) == expected

"""Laws of the label pipeline, over random small fleets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.labels.consensus import consensus, tally
from hub.labels.join import join
from hub.labels.labelset import build_label_set
from hub.labels.signals import UNTRAINABLE_SIGNALS
from hub.labels.types import REASONS, PredictionRef, Validation, Vote
from hub.labels.validate import validate
from tests.hub.labels.strategies import NOW, Scenario, scenarios, votes


def run(s: Scenario, annotations=None, predictions=None) -> Validation:
    joined = join(
        s.annotations if annotations is None else annotations, s.predictions if predictions is None else predictions
    )
    return validate(
        joined, now=NOW, ttl_s=s.ttl_s, schema_changed_at=s.schema_changed_at, unreliable_technicians=s.unreliable
    )


@given(scenarios())
def test_every_annotation_is_accounted_for_exactly_once(s: Scenario) -> None:
    joined = join(s.annotations, s.predictions)
    v = run(s)
    pairs = {(j.annotation.annotation_id, j.prediction.trace_id) for j in joined.joined}
    excluded = [(e.annotation_id, e.trace_id) for e in v.exclusions]
    assert len(excluded) == len(set(excluded))
    assert all(e.reason in REASONS and e.detail for e in v.exclusions)

    # Each (annotation, trace) pair is either used or excluded, never both.
    excluded_pairs = {p for p in excluded if p in pairs}
    assert v.used.isdisjoint(excluded_pairs)
    assert v.used | excluded_pairs == pairs

    # Each annotation is joined, pending, or excluded before joining (rejected, or pending past the TTL).
    joined_ids = {a for a, _ in pairs}
    pending_ids = {a.annotation_id for a in v.pending}
    early = [e.annotation_id for e in v.exclusions if (e.annotation_id, e.trace_id) not in pairs]
    assert len(early) == len(set(early))
    groups = [joined_ids, pending_ids, set(early)]
    assert sum(map(len, groups)) == len(s.annotations)
    assert set().union(*groups) == {a.annotation_id for a in s.annotations}


@given(scenarios(), st.randoms(use_true_random=False))
def test_validation_and_fingerprint_ignore_input_order(s: Scenario, rng) -> None:
    annotations, predictions = list(s.annotations), list(s.predictions)
    rng.shuffle(annotations)
    rng.shuffle(predictions)
    a, b = run(s), run(s, annotations, predictions)
    assert a == b
    assert build_label_set(a, created_ts=0.0).fingerprint == build_label_set(b, created_ts=1.0).fingerprint


@given(scenarios())
def test_label_sets_hold_only_trainable_consensus(s: Scenario) -> None:
    v = run(s)
    by_id = {a.annotation_id: a for a in s.annotations}
    for outcome in v.labelled:
        assert outcome.annotation_ids
        assert all(by_id[a].signal not in UNTRAINABLE_SIGNALS for a in outcome.annotation_ids)
        assert v.rules.agreement_threshold <= outcome.confidence <= 1.0
        assert 0.0 < outcome.weight <= 1.0
    for outcome in v.outcomes:
        if outcome.status != "labelled":
            assert outcome.label is None and outcome.weight == 0.0
    items = build_label_set(v, created_ts=NOW).items
    assert [i.trace_id for i in items] == [o.trace_id for o in v.labelled]
    assert all(i.label in (0, 1) and 0.0 < i.weight <= 1.0 for i in items)


@given(votes(max_traces=1), st.sampled_from([0.5, 0.6, 0.7, 0.9, 1.0]))
def test_label_confidence_lies_in_half_to_one_for_non_conflicts(trace_votes: list[Vote], threshold: float) -> None:
    c = tally(trace_votes, threshold=threshold)
    assert 0.0 <= c.confidence <= 1.0
    if not c.conflict:
        assert 0.5 < c.confidence <= 1.0
        assert c.confidence >= threshold
        winner, loser = (
            (c.weight_fault, c.weight_no_fault) if c.label == "fault" else (c.weight_no_fault, c.weight_fault)
        )
        assert winner > loser


@settings(max_examples=50)
@given(votes(), st.randoms(use_true_random=False))
def test_consensus_is_permutation_invariant(all_votes: list[Vote], rng) -> None:
    shuffled = list(all_votes)
    rng.shuffle(shuffled)
    assert consensus(shuffled) == consensus(all_votes)


@given(scenarios())
def test_pending_traces_join_once_their_predictions_arrive(s: Scenario) -> None:
    first = join(s.annotations, s.predictions)
    # Each missing trace arrives, dated before every range so that only trace annotations can join.
    arrivals = [PredictionRef(a.trace_id, a.device_id, 0.0, "m1", 1, None) for a in first.pending if a.trace_id]
    arrived = {p.trace_id: p for p in arrivals}  # one prediction per trace, from the first device that named it
    second = join(s.annotations, [*s.predictions, *arrived.values()])
    assert second.missing_trace_ids == ()
    assert {a.annotation_id for a in second.pending} == {a.annotation_id for a in first.pending if a.trace_id is None}
    assert {j.annotation.annotation_id for j in first.joined} <= {j.annotation.annotation_id for j in second.joined}

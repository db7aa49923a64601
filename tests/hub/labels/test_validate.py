"""Golden tests: one per exclusion reason, each with the exact exclusion and outcome expected."""

import pytest

from hub.labels.join import join
from hub.labels.types import AnnotationRecord, Exclusion, PredictionRef, TraceOutcome, Validation
from hub.labels.validate import validate
from shared.messages import Signal
from tests.hub.labels.factories import NOW, TTL, ann, pred


def run(annotations: list[AnnotationRecord], predictions: list[PredictionRef] | None = None, **kw) -> Validation:
    kw.setdefault("now", NOW)
    kw.setdefault("ttl_s", TTL)
    return validate(join(annotations, predictions if predictions is not None else [pred("t1")]), **kw)


def reasons(v: Validation) -> list[tuple[str, str | None, str]]:
    return [(e.annotation_id, e.trace_id, e.reason) for e in v.exclusions]


def test_clean_single_label() -> None:
    v = run([ann("a1", confidence=0.8)])
    assert v.exclusions == ()
    assert v.outcomes == (
        TraceOutcome(
            trace_id="t1",
            device_id="pump-1",
            cohort="site-a",
            model_version="m1",
            status="labelled",
            label="fault",
            confidence=1.0,
            weight=0.8,
            weight_fault=0.8,
            weight_no_fault=0.0,
            annotation_ids=("a1",),
            reported_fault=0,
            reported_no_fault=0,
        ),
    )
    assert v.used == {("a1", "t1")}


def test_duplicate_keeps_the_first_by_time_not_by_input_order() -> None:
    v = run([ann("a2", created=9_100.0), ann("a1", created=9_200.0), ann("a0", created=9_100.0)])
    assert v.exclusions == (
        Exclusion("a1", "t1", "duplicate", "ann already labelled t1 fault in a0"),
        Exclusion("a2", "t1", "duplicate", "ann already labelled t1 fault in a0"),
    )
    assert v.labelled[0].annotation_ids == ("a0",)


def test_duplicate_across_trace_and_range_annotations() -> None:
    v = run([ann("a1", created=9_000.0), ann("a2", None, start=7_000.0, end=8_500.0, created=9_500.0)])
    assert reasons(v) == [("a2", "t1", "duplicate")]


def test_screened_copy_does_not_knock_out_a_good_one() -> None:
    # A thumbs-up first, then the same technician confirms: the confirmation is no duplicate.
    v = run([ann("a1", signal="thumbs", created=8_500.0), ann("a2", created=9_000.0)])
    assert reasons(v) == [("a1", "t1", "untrainable_signal")]
    assert v.labelled[0].annotation_ids == ("a2",)
    assert v.labelled[0].reported_fault == 1


def test_same_technician_opposite_labels_is_no_duplicate_but_a_conflict() -> None:
    v = run([ann("a1"), ann("a2", label="no_fault", created=9_100.0)])
    assert reasons(v) == [("a1", "t1", "conflict_no_consensus"), ("a2", "t1", "conflict_no_consensus")]


@pytest.mark.parametrize(
    ("annotation", "prediction", "kwargs", "detail"),
    [
        # TTL measured from the prediction (the evidence) ...
        (ann("a1"), pred("t1", ts=4_000.0), {}, "6000 s old > ttl 5000 s"),
        # ... or from the annotation, whichever is older.
        (ann("a1", created=4_999.0), pred("t1", ts=8_000.0), {}, "5001 s old > ttl 5000 s"),
        (
            ann("a1"),
            pred("t1", ts=8_000.0),
            {"schema_changed_at": 8_500.0},
            "from 8000, before the schema/model-family change at 8500",
        ),
        (ann("a1"), pred("t1", feature_set_version=0), {}, "prediction feature_set_version 0 != current 1"),
        (ann("a1", feature_set_version=2), pred("t1"), {}, "annotation feature_set_version 2 != current 1"),
        (ann("a1", model_family="rf"), pred("t1"), {"model_family": "gbc"}, "model family rf != current gbc"),
    ],
)
def test_stale(annotation: AnnotationRecord, prediction: PredictionRef, kwargs: dict, detail: str) -> None:
    v = run([annotation], [prediction], **kwargs)
    assert v.exclusions == (Exclusion("a1", "t1", "stale", detail),)
    assert [(o.trace_id, o.status, o.label, o.annotation_ids) for o in v.outcomes] == [("t1", "no_trainable", None, ())]


def test_not_stale_at_the_boundaries() -> None:
    # Exactly TTL old, exactly at the schema change, unknown markers, or no current family: all fresh.
    v = run(
        [ann("a1", created=NOW - TTL, model_family="rf")],
        [pred("t1", ts=NOW - TTL, feature_set_version=None)],
        schema_changed_at=NOW - TTL,
    )
    assert v.exclusions == ()
    assert v.labelled[0].annotation_ids == ("a1",)


def test_pending_retires_as_stale_after_the_ttl() -> None:
    fresh = ann("a1", "t9", created=NOW - TTL)
    old = ann("a2", "t9", created=NOW - TTL - 1.0)
    v = run([fresh, old])
    assert v.pending == (fresh,)
    assert v.exclusions == (
        Exclusion("a2", "t9", "stale", "pending 5001 s > ttl 5000 s: its prediction never arrived"),
    )


def test_unreliable_annotator() -> None:
    v = run(
        [ann("a1", tech="zed"), ann("a2", tech="ann", label="no_fault", signal="rating")],
        unreliable_technicians={"zed"},
    )
    assert v.exclusions == (Exclusion("a1", "t1", "unreliable_annotator", "technician zed is flagged unreliable"),)
    assert (v.labelled[0].label, v.labelled[0].annotation_ids) == ("no_fault", ("a2",))
    assert v.rules.unreliable_technicians == ("zed",)


@pytest.mark.parametrize("signal", ["thumbs", "implicit"])
def test_thumbs_style_signals_are_reported_never_trained(signal: Signal) -> None:
    v = run(
        [
            ann("a1", signal=signal),
            ann("a2", signal=signal, tech="ben", label="no_fault"),
            ann("a3", signal=signal, tech="cy", label="no_fault"),
        ]
    )
    detail = f"{signal} is never trained on; reported only"
    assert v.exclusions == tuple(Exclusion(a, "t1", "untrainable_signal", detail) for a in ("a1", "a2", "a3"))
    assert [(o.status, o.reported_fault, o.reported_no_fault) for o in v.outcomes] == [("no_trainable", 1, 2)]
    assert v.used == frozenset()


def test_caller_can_narrow_but_never_widen_trainable_signals() -> None:
    v = run([ann("a1", signal="rating")], trainable_signals={"confirmed", "correction"})
    assert v.exclusions == (Exclusion("a1", "t1", "untrainable_signal", "rating is not trainable under these rules"),)
    assert v.outcomes[0].reported_fault == 1
    with pytest.raises(ValueError, match="thumbs is never trainable"):
        run([ann("a1")], trainable_signals={"confirmed", "thumbs"})
    with pytest.raises(ValueError, match="unknown signal"):
        run([ann("a1")], trainable_signals={"gut_feeling"})


def test_conflict_no_consensus() -> None:
    v = run([ann("a1"), ann("a2", tech="ben", label="no_fault")])
    detail = "fault 1.000 vs no_fault 1.000: winning share 0.500 below 0.7"
    assert v.exclusions == (
        Exclusion("a1", "t1", "conflict_no_consensus", detail),
        Exclusion("a2", "t1", "conflict_no_consensus", detail),
    )
    (outcome,) = v.conflicts
    assert (outcome.status, outcome.label, outcome.confidence, outcome.weight) == ("conflict", None, 0.5, 0.0)
    assert outcome.annotation_ids == ("a1", "a2")
    assert v.used == frozenset()


def test_zero_confidence_votes_are_no_consensus() -> None:
    v = run([ann("a1", confidence=0.0)])
    assert v.exclusions == (Exclusion("a1", "t1", "conflict_no_consensus", "no weight: every vote has confidence 0"),)


def test_confirmed_fault_beats_two_thumbs_no_fault() -> None:
    v = run(
        [
            ann("a1"),
            ann("a2", tech="ben", label="no_fault", signal="thumbs"),
            ann("a3", tech="cy", label="no_fault", signal="thumbs"),
        ]
    )
    (outcome,) = v.labelled
    assert (outcome.label, outcome.confidence, outcome.weight) == ("fault", 1.0, 1.0)
    assert (outcome.reported_fault, outcome.reported_no_fault) == (0, 2)


def test_dissent_lowers_confidence_and_weight_and_is_still_used() -> None:
    # confirmed fault (1.0) vs rating no_fault (0.16): share 1 / 1.16.
    v = run([ann("a1"), ann("a2", tech="ben", label="no_fault", signal="rating")])
    (outcome,) = v.labelled
    assert outcome.confidence == pytest.approx(1 / 1.16, abs=1e-12)
    assert outcome.weight == pytest.approx(1 / 1.16, abs=1e-12)
    assert outcome.annotation_ids == ("a1", "a2")
    assert v.exclusions == ()


def test_first_applicable_reason_wins() -> None:
    # thumbs + stale + unreliable: reported as untrainable; stale + unreliable: stale.
    v = run(
        [ann("a1", signal="thumbs", tech="zed", created=1.0), ann("a2", tech="zed", created=1.0)],
        unreliable_technicians={"zed"},
    )
    assert reasons(v) == [("a1", "t1", "untrainable_signal"), ("a2", "t1", "stale")]


def test_device_mismatch_is_carried_over() -> None:
    v = run([ann("a1", device="pump-2")])
    assert reasons(v) == [("a1", "t1", "device_mismatch")]
    assert v.outcomes == ()


def test_exclusion_counts_list_every_reason() -> None:
    v = run([ann("a1"), ann("a2"), ann("a3", signal="thumbs"), ann("a4", "t9", created=1.0)])
    assert v.exclusion_counts() == {
        "duplicate": 1,
        "stale": 1,
        "unreliable_annotator": 0,
        "untrainable_signal": 1,
        "conflict_no_consensus": 0,
        "device_mismatch": 0,
        "device_cap": 0,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"ttl_s": 0.0}, "ttl_s"), ({"now": float("nan")}, "now"), ({"agreement_threshold": 0.4}, "agreement_threshold")],
)
def test_bad_parameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run([], **kwargs)

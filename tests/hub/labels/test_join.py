import pytest

from hub.labels.join import join
from hub.labels.types import AnnotationRecord, Exclusion
from hub.labels.validate import validate
from tests.hub.labels.factories import NOW, TTL, ann, pred


def pairs(annotations: list[AnnotationRecord], predictions: list) -> list[tuple[str, str, str]]:
    return [(j.annotation.annotation_id, j.prediction.trace_id, j.via) for j in join(annotations, predictions).joined]


def test_trace_annotation_joins_its_prediction() -> None:
    result = join([ann("a1", "t1")], [pred("t1"), pred("t2")])
    assert [(j.annotation.annotation_id, j.prediction, j.via) for j in result.joined] == [("a1", pred("t1"), "trace")]
    assert result.pending == ()
    assert result.rejected == ()


def test_unknown_trace_is_pending_then_joins_when_the_prediction_arrives() -> None:
    early = join([ann("a1", "t9")], [pred("t1")])
    assert early.joined == ()
    assert [a.annotation_id for a in early.pending] == ["a1"]
    assert early.missing_trace_ids == ("t9",)
    validated = validate(early, now=NOW, ttl_s=TTL)
    assert [a.annotation_id for a in validated.pending] == ["a1"]
    assert validated.exclusions == ()
    assert validated.outcomes == ()

    late = join([ann("a1", "t9")], [pred("t1"), pred("t9")])
    assert pairs([ann("a1", "t9")], [pred("t1"), pred("t9")]) == [("a1", "t9", "trace")]
    assert late.pending == ()
    assert late.missing_trace_ids == ()
    outcome = validate(late, now=NOW, ttl_s=TTL).outcomes
    assert [(o.trace_id, o.status, o.label) for o in outcome] == [("t9", "labelled", "fault")]


def test_trace_of_another_device_is_rejected() -> None:
    result = join([ann("a1", "t1", device="pump-2")], [pred("t1")])
    assert result.joined == ()
    assert result.pending == ()
    assert result.rejected == (Exclusion("a1", "t1", "device_mismatch", "trace t1 belongs to pump-1, not pump-2"),)


def test_range_expands_to_the_devices_predictions_ends_included() -> None:
    predictions = [
        pred("t1", 99.0),
        pred("t2", 100.0),
        pred("t3", 150.0),
        pred("t4", 200.0),
        pred("t5", 200.5),
        pred("t6", 150.0, device="pump-2"),
    ]
    got = pairs([ann("a1", None, start=100.0, end=200.0)], predictions)
    assert got == [("a1", "t2", "range"), ("a1", "t3", "range"), ("a1", "t4", "range")]


def test_range_without_predictions_is_pending_and_grows_on_rejoin() -> None:
    annotation = ann("a1", None, start=100.0, end=200.0)
    first = join([annotation], [pred("t1", 50.0)])
    assert first.joined == ()
    assert first.pending == (annotation,)
    assert first.missing_trace_ids == ()  # a range names no trace to ask for
    assert pairs([annotation], [pred("t1", 50.0), pred("t2", 120.0)]) == [("a1", "t2", "range")]
    assert pairs([annotation], [pred("t2", 120.0), pred("t3", 180.0)]) == [("a1", "t2", "range"), ("a1", "t3", "range")]


def test_trace_id_wins_over_a_range_given_alongside() -> None:
    annotation = ann("a1", "t1", start=0.0, end=1.0)
    assert pairs([annotation], [pred("t1", 500.0), pred("t2", 0.5)]) == [("a1", "t1", "trace")]


def test_output_is_sorted_whatever_the_input_order() -> None:
    annotations = [ann("b", "t2"), ann("a", None, start=0.0, end=10.0), ann("c", "t1")]
    predictions = [pred("t2", 5.0), pred("t1", 5.0)]
    assert join(annotations, predictions) == join(annotations[::-1], predictions[::-1])
    assert pairs(annotations, predictions) == [
        ("a", "t1", "range"),
        ("a", "t2", "range"),
        ("b", "t2", "trace"),
        ("c", "t1", "trace"),
    ]


def test_repeated_annotation_id_is_refused() -> None:
    with pytest.raises(ValueError, match="annotation a1 appears twice"):
        join([ann("a1", "t1"), ann("a1", "t2")], [pred("t1")])


def test_identical_predictions_collapse_but_different_ones_are_refused() -> None:
    assert len(join([ann("a1", "t1")], [pred("t1"), pred("t1")]).joined) == 1
    with pytest.raises(ValueError, match="trace t1 appears twice"):
        join([], [pred("t1", 1.0), pred("t1", 2.0)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trace_id": None}, "needs a trace_id"),
        ({"trace_id": None, "start": 1.0}, "go together"),
        ({"trace_id": None, "start": 2.0, "end": 1.0}, "end_ts is before start_ts"),
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"label": "maybe"}, "label"),
        ({"signal": "vibes"}, "unknown signal"),
        ({"created": float("inf")}, "created_ts"),
    ],
)
def test_annotation_record_refuses_what_cannot_be_a_label(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ann("a1", **kwargs)


def test_records_from_wire_messages() -> None:
    from hub.labels.types import PredictionRef
    from shared.messages import Annotation, Sample

    message = Annotation(
        device_id="pump-1", ts=5.0, trace_id="t1", label="no_fault", technician_id="ann", signal="rating"
    )
    record = AnnotationRecord.from_message(message, model_family="gbc")
    assert (record.annotation_id, record.created_ts, record.label, record.signal) == (
        message.annotation_id,
        5.0,
        "no_fault",
        "rating",
    )
    assert record.model_family == "gbc"
    sample = Sample(
        device_id="pump-1",
        ts=4.0,
        model_version="m1",
        trace_id="t1",
        window_start=0.0,
        window_end=4.0,
        score=0.1,
        threshold=0.5,
        decision=False,
        features=[1.0],
        reason="random",
    )
    ref = PredictionRef.from_message(sample, feature_set_version=1, cohort="site-a")
    assert ref == PredictionRef("t1", "pump-1", 4.0, "m1", 1, "site-a")


def test_votes_of_a_join() -> None:
    from hub.labels.types import Vote

    result = join(
        [ann("a1", "t1"), ann("a2", None, start=0.0, end=9_999.0, signal="thumbs", label="no_fault")], [pred("t1")]
    )
    assert result.votes() == (
        Vote("a1", "t1", "ann", "fault", "confirmed", 1.0),
        Vote("a2", "t1", "ann", "no_fault", "thumbs", 1.0),
    )
    assert result.votes({"confirmed"}) == (Vote("a1", "t1", "ann", "fault", "confirmed", 1.0),)

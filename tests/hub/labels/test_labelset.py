import dataclasses
import json
import random

import pytest

from hub.labels.join import join
from hub.labels.labelset import LabelItem, LabelSet, build_label_set, fingerprint, max_cohort_share
from hub.labels.types import AnnotationRecord, PredictionRef
from hub.labels.validate import validate
from tests.hub.labels.factories import NOW, TTL, ann, pred


def scenario() -> tuple[list[AnnotationRecord], list[PredictionRef]]:
    predictions = [
        pred("t1", cohort="site-a"),
        pred("t2", cohort="site-a"),
        pred("t3", cohort="site-b"),
        pred("t4", cohort=None),
        pred("t5", cohort="site-b"),
    ]
    annotations = [
        ann("a1", "t1", confidence=0.9),
        ann("a2", "t1", tech="ben", signal="escalation"),
        ann("a3", "t2", label="no_fault", signal="rating", confidence=0.5),
        ann("a4", "t2", tech="ben", label="no_fault", signal="thumbs"),
        ann("a5", "t3", label="no_fault", signal="correction"),
        ann("a6", "t3", tech="ben", label="fault", signal="rating"),
        ann("a7", "t4", tech="ben"),
        ann("a8", "t4", tech="cy", label="no_fault"),
        ann("a9", "t5", signal="thumbs"),
        ann("a10", "t9"),
        ann("a11", "t1"),
    ]
    return annotations, predictions


def build(annotations: list[AnnotationRecord], predictions: list[PredictionRef], **kw) -> LabelSet:
    now = kw.pop("now", NOW)
    created_ts = kw.pop("created_ts", now)
    return build_label_set(validate(join(annotations, predictions), now=now, ttl_s=TTL, **kw), created_ts=created_ts)


# t3 is a correction by ann vs a rating by ben, each weighed by reliability from the *other* traces:
# ann agreed with ben on t1 → (3.2 + 1) / (4 + 1) / 0.8 = 1.05; ben agreed on t1 but not with cy on t4
# → (3.2 + 1) / (4 + 2) / 0.8 = 0.875. Share = 1.05 / (1.05 + 0.16 · 0.875) = 1.05 / 1.19.
T3_SHARE = 1.05 / 1.19


def test_golden_items() -> None:
    ls = build(*scenario())
    t1, t2, t3 = ls.items
    # t1: two agreeing (a11 is a duplicate of a1): weight = best signal × confidence = 1.0 × 0.9.
    assert t1 == LabelItem("t1", "pump-1", 1, 0.9, 1.0, 2, "site-a", "m1")
    # t2: a rating at confidence 0.5 (the thumbs is only reported): 0.16 × 0.5.
    assert t2 == LabelItem("t2", "pump-1", 0, 0.08, 1.0, 1, "site-a", "m1")
    assert t3.confidence == pytest.approx(T3_SHARE, abs=1e-12)
    assert t3 == LabelItem("t3", "pump-1", 0, 0.882352941176, t3.confidence, 2, "site-b", "m1")


def test_golden_summary() -> None:
    summary = build(*scenario()).to_dict()
    rules = summary.pop("rules")
    assert summary == {
        "id": "ls-" + summary["fingerprint"][:16],
        "fingerprint": summary["fingerprint"],
        "created_ts": NOW,
        "n_items": 3,
        "n_fault": 1,
        "n_no_fault": 2,
        "total_weight": 1.862353,
        "cohorts": {
            "site-a": {"n": 2, "n_fault": 1, "weight": 0.98},
            "site-b": {"n": 1, "n_fault": 0, "weight": 0.882353},
        },
        "excluded": {
            "duplicate": 1,
            "stale": 0,
            "unreliable_annotator": 0,
            "untrainable_signal": 2,
            "conflict_no_consensus": 2,
            "device_mismatch": 0,
            "device_cap": 0,
        },
        "n_excluded": 5,
        "n_pending": 1,
        "n_conflicts": 1,
        "reported_untrainable": {"fault": 1, "no_fault": 1},
    }
    assert rules["ttl_s"] == TTL
    assert rules["trainable_signals"] == ["confirmed", "correction", "escalation", "rating"]
    json.dumps(summary)  # JSON-serialisable


def test_fingerprint_is_pinned() -> None:
    # Changing the canonical form (or the rules' defaults) must be a deliberate act: update this value.
    assert build(*scenario()).fingerprint == "609f8e3be9cadc2a6f94977fc7b1316f553e2b483d60f809ad4ce97ba1822601"


def test_same_input_in_any_order_gives_the_same_fingerprint() -> None:
    annotations, predictions = scenario()
    expected = build(annotations, predictions)
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(annotations)
        rng.shuffle(predictions)
        got = build(annotations, predictions)
        assert (got.id, got.fingerprint, got.items) == (expected.id, expected.fingerprint, expected.items)


def test_build_time_and_now_do_not_change_the_fingerprint() -> None:
    a = build(*scenario(), created_ts=1.0)
    b = build(*scenario(), now=NOW + 100.0, created_ts=2.0)
    assert a.fingerprint == b.fingerprint
    assert a.created_ts != b.created_ts


def test_changing_one_label_changes_the_fingerprint() -> None:
    annotations, predictions = scenario()
    base = build(annotations, predictions)
    annotations[4] = dataclasses.replace(annotations[4], label="fault")  # t3: now fault vs fault
    changed = build(annotations, predictions)
    assert [i.label for i in changed.items if i.trace_id == "t3"] == [1]
    assert changed.fingerprint != base.fingerprint
    assert changed.id != base.id


def test_changing_a_rule_changes_the_fingerprint() -> None:
    annotations, predictions = scenario()
    base = build(annotations, predictions)
    assert build(annotations, predictions, agreement_threshold=0.8).fingerprint != base.fingerprint
    assert build(annotations, predictions, unreliable_technicians={"nobody"}).fingerprint != base.fingerprint


def test_fingerprint_covers_label_and_weight_only() -> None:
    items = [LabelItem("t1", "d", 1, 0.5, 1.0, 1, "a", None)]
    rules = build(*scenario()).rules
    moved = [dataclasses.replace(items[0], cohort="b", n_annotations=3, device_id="e")]
    assert fingerprint(items, rules) == fingerprint(moved, rules)
    assert fingerprint(items, rules) != fingerprint([dataclasses.replace(items[0], weight=0.500001)], rules)


def test_thumbs_never_enter_a_label_set() -> None:
    annotations = [ann(f"a{i}", f"t{i}", signal="thumbs") for i in range(5)]
    ls = build(annotations, [pred(f"t{i}") for i in range(5)])
    assert ls.items == ()
    assert ls.reported_fault == 5
    assert ls.to_dict()["excluded"]["untrainable_signal"] == 5


def test_empty_label_set() -> None:
    ls = build([], [])
    assert ls.items == ()
    assert ls.to_dict()["cohorts"] == {}
    assert max_cohort_share(ls).ok


def test_max_cohort_share_by_weight_and_by_count() -> None:
    ls = build(*scenario())
    by_weight = max_cohort_share(ls)
    assert (by_weight.cohort, by_weight.by, by_weight.limit, by_weight.ok) == ("site-a", "weight", 0.5, False)
    assert by_weight.share == pytest.approx(0.98 / 1.862353)  # 0.526
    assert max_cohort_share(ls, limit=0.55).ok
    by_count = max_cohort_share(ls, by="count", limit=0.55)
    assert (by_count.cohort, by_count.share, by_count.ok) == ("site-a", 2 / 3, False)
    assert max_cohort_share(ls, by="count", limit=0.7).ok


def test_one_cohort_cannot_pass_a_limit_below_one_and_unknown_is_a_cohort() -> None:
    ls = build([ann("a1", "t1"), ann("a2", "t2")], [pred("t1", cohort=None), pred("t2", cohort=None)])
    assert list(ls.cohorts()) == ["unknown"]
    share = max_cohort_share(ls)
    assert (share.cohort, share.share, share.ok) == ("unknown", 1.0, False)
    assert max_cohort_share(ls, limit=1.0).ok
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="limit"):
            max_cohort_share(ls, limit=bad)

"""The story in the console's words: a headline, six numbers, gates without jargon, each failed check once, and
the live lines on one clock."""

from __future__ import annotations

from typing import Any

from fleetloop.story.console import event_stamp, summary_table
from fleetloop.story.timeline import Event
from fleetloop.story.words import check_name, failed_checks, gate_line, headline, numbers


def rates(recall: float, far: float) -> dict[str, Any]:
    return {"recall": recall, "far": far, "n_pos": 100, "n_neg": 900}


SUMMARY: dict[str, Any] = {
    "drift_detected": True, "drift_detected_after_s": 5.7, "drift_to_recovered_s": 68.2, "drift_site": "site-a",
    "promoted_version": "v4", "interrupted": False, "failed": None,
    "accuracy": {"drifted_devices": {"before_fix": {"served": rates(0.422, 0.02)},
                                     "after_fix": {"served": rates(0.763, 0.018), "frozen": rates(0.342, 0.017)}}},
}


def test_the_headline_says_what_happened_and_the_six_numbers_are_of_the_drifted_site() -> None:
    sentence = headline(SUMMARY)
    assert sentence.startswith("A bad sensor recalibration on site-a was detected 5.7 s after it happened")
    assert "v4 replaced v1 on every device 68 s after the drift" in sentence and "76 %" in sentence
    assert "34 %" in sentence
    assert numbers(SUMMARY) == [
        ("drift detected after", "5.7 s"), ("recall on site-a before the fix", "0.422"),
        ("recall on site-a after the fix", "0.763"), ("recall on site-a after, a frozen v1", "0.342"),
        ("false alarms on site-a after the fix", "0.0180 (frozen v1: 0.0170)"),
        ("drift to recovered fleet", "68.2 s")]
    assert headline({**SUMMARY, "failed": "the gate did not pass v5"}).startswith("The story stopped early")


def test_a_gate_reads_in_words_and_each_failed_check_is_named_once() -> None:
    line = gate_line({"candidate_recall": 0.809, "incumbent_recall": 0.624, "candidate_far": 0.034,
                      "incumbent_far": 0.033, "n_pos": 372, "n_neg": 2754})
    assert line == ("recall 0.809 vs 0.624, false alarms 0.034 vs 0.033 (candidate vs active model, on 372 failing "
                    "/ 2,754 healthy windows)")
    assert "FAR" not in line and "+/" not in line
    gate = {"reasons": ["cohort_recall:site-a/fan: dropped", "cohort_recall:site-a/pump: dropped",
                        "false_alarm_rate: rose", "cohort_recall:site-a/fan: again", "latency_p99_ms: 12 > 10"]}
    assert failed_checks(gate) == ["recall on site-a/fan", "recall on site-a/pump", "false alarms",
                                   "p99 inference latency"]
    assert check_name("something_new:x: detail") == "something new (x)"


def test_live_lines_are_on_one_clock_and_a_late_event_says_when_it_happened() -> None:
    assert event_stamp(Event(100.0, 9.9, "setup", "hub API on …"), now=100.0) == ("setup", "hub API on …")
    assert event_stamp(Event(1012.0, 12.0, "stage", "fleet stage"), now=1012.3) == ("t+12.3s", "fleet stage")
    # a background retrain's gate, learned of 22 s after it finished: printed on the clock, in order
    assert event_stamp(Event(1063.5, 63.5, "gate", "v4: gate fail"), now=1085.9) == (
        "t+85.9s", "v4: gate fail (at t+63.5 s)")


def test_the_summary_table_opens_with_the_six_numbers() -> None:
    from rich.console import Console

    summary = {**SUMMARY, "devices": 4, "cohorts": ["site-a/fan"], "drifted_devices": ["d-1"],
               "drift_features": ["vibration.mean"], "gate": {"verdict": "pass", "n_pos": 10, "n_neg": 20},
               "candidate": "v4", "blocked_candidates": [], "recall_before": 0.5, "recall_after": 0.8,
               "far_before": 0.01, "far_after": 0.01, "bad_gate": {"verdict": "fail"}, "bad_version": "v5",
               "bad_candidate_rejected": True, "nan_version": "nan-1", "canary_rolled_back": True, "wall_s": 60.0}
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    text = console.export_text()
    assert text.index("drift detected after") < text.index("recall on site-a before the fix") < text.index(
        "devices / cohorts")
    assert "FAR" not in text and "+/" not in text and "10 failing / 20 healthy windows" in text

"""What the console says in words: exact outputs of the pure formatting functions."""

from __future__ import annotations

import doctest

import hub.console.words as words
from hub.console.words import age, decision_words, feature_moves, iso, score_words, severity


def test_times_and_ages_read_as_people_say_them() -> None:
    assert iso(1_700_000_000.0) == "2023-11-14T22:13:20Z" and iso(None) == "—" and iso(float("nan")) == "—"
    assert [age(s) for s in (5, 600, 7200, 3 * 86400, -3)] == ["5 s", "10 min", "2 h", "3 d", "0 s"]


def test_severity_rises_with_the_score_and_the_run_of_alarms() -> None:
    assert [severity(s, w) for s, w in ((0.95, 3), (0.6, 25), (0.75, 3), (0.6, 5), (0.6, 3))] == [
        "high", "high", "medium", "medium", "low"]


def test_a_decision_is_one_sentence_and_pausing_says_so() -> None:
    decision = {"kind": "advance", "reason": "canary healthy on 2 devices after 31 s"}
    assert decision_words(decision) == "Moved on to the next stage. Canary healthy on 2 devices after 31 s."
    assert decision_words(decision, paused=True).startswith("Paused by an operator")
    assert decision_words(decision, paused=True, status="completed").startswith("Moved on")
    assert decision_words(None) == "No decision yet."


def test_the_features_that_moved_most_come_first_with_their_z_scores() -> None:
    edges = [[0.0, 1.0, 2.0]] * 3
    hist = [[0, 10, 10, 0]] * 3  # mean 1.0, sd 0.5
    moves = feature_moves([1.0, 3.0, -0.5], ["rms", "kurtosis", "peak"], edges, hist, top=2)
    assert [(m.name, round(m.z, 6)) for m in moves] == [("kurtosis", 4.0), ("peak", -3.0)]
    assert feature_moves([float("nan")], ["x"], edges, hist) == []
    assert score_words(0.8, 0.5) == "score 0.800, above the threshold 0.500 (1.6×)"


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(words).failed == 0

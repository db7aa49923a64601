"""The story's numbers in words, as the hub's console says them: the headline of a run, a gate in one line, the
checks that failed (each once, by name and cohort). No abbreviations: "false alarms", never "FAR".

>>> check_name("cohort_recall:site-a/pump: dropped 0.21 (lower bound 0.05 > 0.02)")
'recall on site-a/pump'
>>> failed_checks({"reasons": ["recall: dropped", "cohort_recall:a: dropped", "cohort_recall:b: dropped",
...                            "recall: again"]})
['recall', 'recall on a', 'recall on b']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_name", "failed_checks", "gate_line", "headline", "numbers"]

_CHECKS = {
    "recall": "recall", "false_alarm_rate": "false alarms", "cohort_recall": "recall on {}",
    "cohort_false_alarm_rate": "false alarms on {}", "same_slice": "the same evaluation slice ({})",
    "min_positives": "enough failing windows", "min_negatives": "enough healthy windows",
    "min_positive_blocks": "enough blocks with failures", "min_negative_blocks": "enough healthy blocks",
    "parity_abs_diff": "ONNX/scikit-learn score parity", "parity_label_flips": "ONNX/scikit-learn decision parity",
    "parity_report": "the parity report", "latency_p99_ms": "p99 inference latency",
}


def check_name(reason: str) -> str:
    """A gate reason (``name[:cohort]: detail``) as the check's name in words."""
    name = reason.split(": ", 1)[0]
    base, _, cohort = name.partition(":")
    words = _CHECKS.get(base, base.replace("_", " "))
    return words.format(cohort) if "{}" in words else words if not cohort else f"{words} ({cohort})"


def failed_checks(gate: Mapping[str, Any]) -> list[str]:
    """The checks a gate decision failed, in its order, each once."""
    return list(dict.fromkeys(check_name(str(r)) for r in gate.get("reasons", [])))


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)


def gate_line(numbers: Mapping[str, Any]) -> str:
    """`script.gate_numbers` of a decision in one line: the candidate against the incumbent, and on what."""
    return (f"recall {_f(numbers.get('candidate_recall'))} vs {_f(numbers.get('incumbent_recall'))}, false alarms "
            f"{_f(numbers.get('candidate_far'))} vs {_f(numbers.get('incumbent_far'))} (candidate vs active model, "
            f"on {_f(numbers.get('n_pos'))} failing / {_f(numbers.get('n_neg'))} healthy windows)")


def _rate(summary: Mapping[str, Any], period: str, model: str, key: str) -> float | None:
    rates = (((summary.get("accuracy") or {}).get("drifted_devices") or {}).get(period) or {}).get(model) or {}
    value = rates.get(key)
    return None if value is None or value != value else float(value)


def numbers(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The six numbers that matter, as (what, value): drift detected after, recall on the drifted site before the
    fix, after it and of a frozen v1 after it, false alarms there, and drift → recovered fleet."""
    site = summary.get("drift_site") or "the drifted site"
    return [
        ("drift detected after", f"{_f(summary.get('drift_detected_after_s'), 1)} s"),
        (f"recall on {site} before the fix", _f(_rate(summary, "before_fix", "served", "recall"))),
        (f"recall on {site} after the fix", _f(_rate(summary, "after_fix", "served", "recall"))),
        (f"recall on {site} after, a frozen v1", _f(_rate(summary, "after_fix", "frozen", "recall"))),
        (f"false alarms on {site} after the fix", f"{_f(_rate(summary, 'after_fix', 'served', 'far'), 4)} "
         f"(frozen v1: {_f(_rate(summary, 'after_fix', 'frozen', 'far'), 4)})"),
        ("drift to recovered fleet", f"{_f(summary.get('drift_to_recovered_s'), 1)} s"),
    ]


def headline(summary: Mapping[str, Any]) -> str:
    """One sentence: what happened to the fleet, and whether the loop fixed it."""
    site = summary.get("drift_site") or "a site"
    if summary.get("interrupted"):
        return "The demo was interrupted before the story ended."
    if summary.get("failed"):
        return f"The story stopped early: {summary['failed']}."
    if summary.get("scenario") == "new-failure-mode":
        return _new_mode_headline(summary, site)
    if not summary.get("drift_detected"):
        return f"A bad sensor recalibration on {site} went undetected."
    after, frozen = (_rate(summary, "after_fix", m, "recall") for m in ("served", "frozen"))
    caught = "" if after is None else (f"; it now catches {100 * after:.0f} % of failures there"
                                       + ("" if frozen is None else f", where the old model would catch "
                                          f"{100 * frozen:.0f} %"))
    fixed = (f"{summary.get('promoted_version')} replaced v1 on every device "
             f"{_f(summary.get('drift_to_recovered_s'), 0)} s after the drift" if summary.get("promoted_version")
             else "no fix reached the fleet")
    return (f"A bad sensor recalibration on {site} was detected {_f(summary.get('drift_detected_after_s'), 1)} s "
            f"after it happened; technicians' labels retrained the model and {fixed}{caught}.")


def _new_mode_headline(summary: Mapping[str, Any], site: str) -> str:
    after, frozen = (_rate(summary, "after_fix", m, "recall") for m in ("served", "frozen"))
    fleet = (summary.get("drift_events") or {}).get("fleet")
    seen = "no fleet drift verdict fired" if fleet == 0 else f"{fleet} fleet drift event(s) fired"
    told = ("the technicians' labels showed v1's recall dropping" if summary.get("performance_degraded")
            else "the labels never showed v1's recall dropping")
    caught = "" if after is None or frozen is None else (f"; {summary.get('promoted_version')} catches "
                                                         f"{100 * after:.0f} % of them, v1 {100 * frozen:.0f} %")
    return f"A new failure mode appeared on {site}: {seen}, {told}, the hub retrained on it{caught}."

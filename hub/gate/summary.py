"""A gate decision in a few lines: the verdict, the checks that decided it and the numbers behind them.

The full record (every check, the bootstrap, the configuration) stays on the registry version; this short
form is what a retrain job, ``POST /models`` and the CLI show. Pure: works on the stored (JSON) record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADLINE = ("recall", "false_alarm_rate")
"""The checks that decide a passing verdict (the others only ever block it)."""

_NUMBERS = ("recall", "false_alarm_rate", "n_pos", "n_neg")


def gate_summary(record: Mapping[str, Any] | None, *, status: str | None = None) -> dict[str, Any] | None:
    """`record` (a gate record: `hub.training.evaluate.GateRun.record`, or a skipped gate) in short; None without one.

    >>> s = gate_summary({"verdict": "skipped", "reason": "lab-tested", "actor": "operator:ana"}, status="candidate")
    >>> s["verdict"], s["status"], s["deciding"]
    ('skipped', 'candidate', ['skipped by operator:ana: lab-tested'])
    """
    if not record:
        return None
    verdict = str(record.get("verdict"))
    if verdict == "skipped":
        deciding = [f"skipped by {record.get('actor')}: {record.get('reason')}"]
        return {"verdict": verdict, "status": status, "deciding": deciding, "numbers": {}, "split": None}
    checks = {str(c.get("name")): c for c in record.get("checks", []) if isinstance(c, Mapping)}
    if verdict == "pass":
        deciding = [f"{n}: {checks[n].get('detail')}" for n in HEADLINE if n in checks]
    else:
        deciding = [str(r) for r in record.get("reasons", [])]
    cand, inc = record.get("candidate") or {}, record.get("incumbent") or {}
    numbers: dict[str, Any] = {}
    for key in _NUMBERS:
        numbers[f"candidate_{key}"], numbers[f"incumbent_{key}"] = cand.get(key), inc.get(key)
    boot = record.get("bootstrap") or {}
    numbers["positive_blocks"], numbers["negative_blocks"] = boot.get("positive_blocks"), boot.get("negative_blocks")
    split = record.get("split")
    return {"verdict": verdict, "status": status, "deciding": deciding, "numbers": numbers,
            "split": dict(split) if isinstance(split, Mapping) else None}

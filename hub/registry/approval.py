"""Which versions may go to the fleet: pure rules over a version's registry row and its audit trail.

Every version passes the gate before a rollout: a candidate is rolled out only when its gate decision
passed, or an operator skipped the gate with a reason (recorded on the version and in its audit trail). A
version made by hand and registered without either is refused. A revert may roll out a retired version
again, but only one that was active once and whose gate did not refuse it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hub.store.rows import AuditRow, ModelVersionRow

GATE_SKIPPED = "skipped"
CLEARED_VERDICTS = frozenset({"pass", GATE_SKIPPED})
"""Gate verdicts that let a candidate be rolled out."""
UNAPPROVED = frozenset({"rejected", "insufficient_data"})
"""Statuses never approved for devices: not assigned, not served."""


def gate_verdict(gate: Mapping[str, Any] | None) -> str | None:
    """The verdict of a gate record (``pass``, ``fail``, ``insufficient_data``, ``skipped``), None without one."""
    return None if not gate else str(gate.get("verdict"))


def skipped_gate(*, actor: str, reason: str, ts: float, incumbent: str | None) -> dict[str, Any]:
    """The gate record of a skipped gate: who, why, when, and which version it was not judged against."""
    return {"verdict": GATE_SKIPPED, "passed": False, "actor": actor, "reason": reason, "ts": ts,
            "incumbent_version": incumbent, "reasons": [f"gate skipped by {actor}: {reason}"]}


def rollout_refusal(row: ModelVersionRow) -> str | None:
    """Why `row` may not be rolled out as a candidate; None when it may.

    >>> from hub.store.rows import ModelVersionRow
    >>> row = ModelVersionRow("v2", "v1", "candidate", 0.0, 0.0, "cli", "by hand", None, "0" * 64, "s", {})
    >>> rollout_refusal(row)
    'v2 has no gate decision: gate it against the active version (POST /models) or skip the gate with a reason'
    """
    if row.status != "candidate":
        return f"{row.version} is {row.status}: only a candidate can be rolled out"
    verdict = gate_verdict(row.gate)
    if verdict is None:
        return (f"{row.version} has no gate decision: gate it against the active version (POST /models) or skip "
                "the gate with a reason")
    if verdict not in CLEARED_VERDICTS:
        return f"{row.version}'s gate verdict is {verdict}: only a passed (or skipped) gate can be rolled out"
    return None


def revert_refusal(row: ModelVersionRow, audit: Iterable[AuditRow]) -> str | None:
    """Why `row` may not be rolled out again by a revert; None when it may: retired, active once, and its gate
    (if it had one) passed or was skipped."""
    if row.status not in ("retired", "candidate"):
        return f"{row.version} is {row.status}: only a retired version can be reverted to"
    if not any(a.to_status == "active" for a in audit):
        return f"{row.version} was never active: nothing to revert to"
    verdict = gate_verdict(row.gate)
    if verdict is not None and verdict not in CLEARED_VERDICTS:
        return f"{row.version}'s gate verdict is {verdict}: it is not reverted to"
    return None

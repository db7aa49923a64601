"""Whether an assignment may change what this device serves: the hub's approval, expiry, freshness (pure).

Learned from TUF/Uptane (rollback and freeze attacks): a signature alone only says the hub made something, so
the hub signs each assignment for one device with an expiry and a per-device counter that only grows. The
agent keeps the highest counter it accepted (with that assignment's approval) and refuses an older counter (a
replayed assignment), the same counter with other content, an expired assignment, or one for another device.
A rollback is no exception to the counter: it is a newer assignment (higher counter) that names an older
version and says so (``rollback``). Without a pinned key (dev mode) unsigned assignments are admitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from infra.versions import ManifestVerifier
from shared.errors import ModelIntegrityError
from shared.messages import Assign

Verdict = Literal["new", "repeat", "refuse"]


@dataclass(frozen=True)
class Accepted:
    """The newest assignment this device accepted: its counter and its approval (persisted in agent.db)."""

    counter: int
    approval: str

    def to_json(self) -> str:
        return json.dumps({"counter": self.counter, "approval": self.approval})

    @classmethod
    def from_json(cls, raw: str | None) -> Accepted | None:
        try:
            data = json.loads(raw) if raw else None
            return cls(int(data["counter"]), str(data["approval"])) if data else None
        except (ValueError, TypeError, KeyError):
            return None


def verify_approval(assign: Assign, verifier: ManifestVerifier) -> None:
    """ModelIntegrityError unless the assignment carries the pinned key's approval over its signed fields."""
    from shared.signing import assignment_bytes  # imports cryptography: only agents with a pinned key get here

    if not assign.approval or assign.device_id is None or assign.expires is None or assign.counter is None:
        raise ModelIntegrityError("the assignment carries no approval by the hub (signature, device, expiry, counter)")
    try:
        verifier.verify(assignment_bytes(assign), assign.approval.encode())
    except ModelIntegrityError as exc:
        raise ModelIntegrityError(f"the assignment's approval does not verify: {exc}") from None


def admit(assign: Assign, *, device_id: str, now: float, last: Accepted | None,
          signed: bool) -> tuple[Verdict, str]:
    """``new`` (newer than anything accepted: persist it), ``repeat`` (the accepted one again, e.g. retained
    and redelivered) or ``refuse`` with the reason. `signed`: the approval was verified (a key is pinned)."""
    if assign.device_id is not None and assign.device_id != device_id:
        return "refuse", f"the assignment is for {assign.device_id}, not {device_id}"
    if assign.expires is not None and now > assign.expires:
        return "refuse", f"the assignment expired {now - assign.expires:.0f} s ago"
    if assign.counter is None:
        return ("refuse", "the assignment has no counter") if signed else ("new", "unsigned (dev mode)")
    if last is None or assign.counter > last.counter:
        return "new", f"counter {assign.counter}" + (" (a signed rollback)" if assign.rollback else "")
    if assign.counter == last.counter and assign.approval == last.approval:
        return "repeat", f"counter {assign.counter} again"
    if assign.counter == last.counter:
        return "refuse", f"counter {assign.counter} was already used by another assignment"
    return "refuse", f"replayed: counter {assign.counter} is older than the accepted {last.counter}"

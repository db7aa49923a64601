"""The rollout's one error type, under the fleetloop tree so the CLI and API edges translate it."""

from __future__ import annotations

from shared.errors import FleetloopError


class RolloutError(FleetloopError):
    """An invalid plan, an invalid transition (promoting a rolled-back rollout…) or a malformed record."""

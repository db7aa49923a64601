"""The rollout's error types, under the fleetloop tree so the CLI and API edges translate them."""

from __future__ import annotations

from shared.errors import FleetloopError


class RolloutError(FleetloopError):
    """An invalid plan, an invalid transition (promoting a rolled-back rollout…) or a malformed record."""


class RolloutNotFound(RolloutError):
    """No rollout with this id (HTTP 404)."""


class RolloutConflict(RolloutError):
    """Another rollout is running, or this one changed meanwhile (HTTP 409)."""

"""The rollout's error types, defined in the hub's error tree (`hub.errors`) and re-exported here."""

from hub.errors import RolloutConflict, RolloutError, RolloutNotFound

__all__ = ["RolloutConflict", "RolloutError", "RolloutNotFound"]

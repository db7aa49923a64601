"""The rollout's one error type, defined in the hub's error tree (`hub.errors`) and re-exported here."""

from hub.errors import RolloutError

__all__ = ["RolloutError"]

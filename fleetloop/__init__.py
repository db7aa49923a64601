"""fleetloop: the command-line entry point and local development tooling."""

from infra import __version__

__all__ = ["__version__"]

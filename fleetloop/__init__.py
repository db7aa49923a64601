"""fleetloop: the command-line entry point and local development tooling."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'fleetloop' has no attribute {name!r}")
    import infra

    return str(infra.__version__)

"""What both deployables need and neither owns: settings files, one MQTT client builder, the version-directory
reader, dataset paths and the package version.

Dependency order (enforced by ``tests/test_architecture.py``)::

    shared <- infra <- agent, sim <- models <- hub <- fleetloop

`infra` imports only `shared` and third-party libraries; heavy or optional ones (paho) are imported by the module
that needs them, so ``import infra`` stays cheap. ``__version__`` is read from the installed metadata when first
asked for (PEP 562): importlib.metadata and the lookup are a few percent of an agent's start.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'infra' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("fleetloop")
    except PackageNotFoundError:  # running from a source tree that was not installed
        found = "0.0.0+source"
    globals()["__version__"] = found
    return found

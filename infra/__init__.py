"""What both deployables need and neither owns: settings files, one MQTT client builder, the version-directory
reader, dataset paths and the package version.

Dependency order (enforced by ``tests/test_architecture.py``)::

    shared <- infra <- agent, sim <- models <- hub <- fleetloop

`infra` imports only `shared` and third-party libraries; heavy or optional ones (paho) are imported by the module
that needs them, so ``import infra`` stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleetloop")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]

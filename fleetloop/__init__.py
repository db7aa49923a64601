"""fleetloop: the command-line entry point and local development tooling."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleetloop")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

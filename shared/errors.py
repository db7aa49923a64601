"""The fleetloop error tree. Errors are raised inside and translated only at the edges.

    FleetloopError
    ├── ContractError           a message, topic or manifest breaks the wire contract
    │   ├── DecodeError         bytes that are not a valid message (carries a short `reason` code)
    │   └── TopicError          a topic that is not one of ours
    ├── ConfigError             settings that cannot work; the message says what to change
    ├── ModelError
    │   ├── ModelIntegrityError sha256 or signature does not match: the model is refused
    │   └── ModelLoadError      the artifact does not load or does not fit the manifest
    ├── SourceError             a sensor source cannot be opened or read
    └── StoreError              a local or hub database problem
"""

from __future__ import annotations


class FleetloopError(Exception):
    """Base of every error fleetloop raises on purpose."""


class ContractError(FleetloopError):
    """A message, topic or manifest that breaks the wire contract."""


class DecodeError(ContractError):
    """Bytes that cannot be decoded into a valid message.

    `reason` is a short stable code (``too_large``, ``bad_json``, ``bad_msgpack``, ``content_type``, ``schema``,
    ``device_mismatch``, ``unknown_topic``) used as a metrics label and in dead-letter rows.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TopicError(ContractError):
    """A topic string that is not one of fleetloop's."""


class ConfigError(FleetloopError):
    """Settings that cannot work."""


class ModelError(FleetloopError):
    """A model version that cannot be served."""


class ModelIntegrityError(ModelError):
    """The artifact's sha256 or signature does not match its manifest."""


class ModelLoadError(ModelError):
    """The artifact does not load, or its inputs/outputs do not fit the manifest."""


class SourceError(FleetloopError):
    """A sensor source cannot be opened or read."""


class StoreError(FleetloopError):
    """A database problem."""

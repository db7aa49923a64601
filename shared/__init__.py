"""The fleetloop wire contract: messages, topics, codec, errors and feature extraction. No I/O."""

from typing import Final, Literal

SCHEMA_VERSION: Final[Literal[1]] = 1

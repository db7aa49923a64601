"""The fleetloop wire contract: messages, topics, codec, errors and feature extraction. No I/O."""

SCHEMA_VERSION = 1

"""The hub's MQTT layer: device → hub messages validated, dead-lettered or stored idempotently; hub → device
commands and assignments.

- `decoding`: what one inbound message becomes (record or dead letter with a reason); pure.
- `session`: `IngestSession`, the ingest paho client (shared subscriptions, persistent session, manual acks).
- `batch`: `BatchWriter`, the writer thread (batches into the store, acknowledged after commit).
- `ingest`: `IngestWorker`, the session and the writer put together, and its `IngestStats`.
- `publisher`: `CommandPublisher` (hub → device commands, retained assignments) and `TraceRequester`.
"""

from hub.mqtt.decoding import Decoded, decode_message
from hub.mqtt.ingest import IngestStats, IngestWorker

__all__ = ["Decoded", "IngestStats", "IngestWorker", "decode_message"]

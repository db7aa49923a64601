"""Ingest: device → hub MQTT messages, validated, dead-lettered or stored idempotently in the hub store.

- `decoding`: what one inbound message becomes (record or dead letter with a reason); pure.
- `worker`: `IngestWorker`, the paho client and the batching writer thread.
"""

from hub.mqtt.decoding import Decoded, decode_message
from hub.mqtt.ingest import IngestStats, IngestWorker

__all__ = ["Decoded", "IngestStats", "IngestWorker", "decode_message"]

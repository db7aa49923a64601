"""The hub: ingest, storage, labels, drift, training, gate, registry, rollout, API."""

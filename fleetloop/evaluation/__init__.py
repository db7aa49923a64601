"""`fleetloop eval …`: measure the whole feedback loop on public data, through the product's own parts.

- `plan` — which engines the fleet replays, which are feedback or evaluation engines, which gateway replays
  which, in what order, and which windows technicians label (pure);
- `technicians` — the simulated technicians who label feedback engines after their end of life, through the
  agents' annotation outbox;
- `loop` — the run: broker, hub, gateway processes, technicians and the operator who rolls candidates out;
- `report` — offline scoring of the static, loop and oracle models and the result table;
- `cli` — ``fleetloop eval cmapss``.
"""

"""End-to-end delivery: per-device sequence numbers, the hub's acknowledgements and gap detection with resends.

`ranges` (pure) compresses sequence numbers and decides which holes are gaps to report and ask for again;
`service` is the only I/O: it reads holes from the store, records ``sequence_gap`` events, counts them in the
metrics and sends ``resend`` commands. The ingest worker sends the ``ack`` commands after each commit.
"""

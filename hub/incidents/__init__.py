"""Incidents: a device's alarm windows grouped into one thing a technician acknowledges and resolves.

Pure modules: `grouping` (debounce: which alarm windows join which incident), `lifecycle` (pending → open →
acknowledged → resolved, auto-closed after quiet time; what a technician may do when), `verdicts` (a
technician's verdict as annotations), `notify` (the event body, its HMAC signature, the retry schedule, who is
told per site). `service` is the only I/O: the periodic job that builds incidents from ingested anomalies, the
technician's actions, and the notifier that delivers webhooks and MQTT messages from the delivery log.
"""

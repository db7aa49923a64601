"""Retraining: triggers, datasets, the retrain job and its gate, and the background worker.

- `triggers`: `TriggerPolicy`, `decide` (pure): when to retrain, and which guard blocks it.
- `dataset`: the simulated base set + validated field feedback, and the frozen evaluation slice.
- `retrain`: `Retrainer.run(job)`: fit, threshold, ONNX, parity, manifest, register, gate.
- `evaluate`: both models scored on the same slice, latency, `hub.gate.verdict.evaluate_gate`.
- `worker`: `TrainingWorker`, one job at a time in a thread, progress in the store.
- `service`: `TrainingService`, what the API, CLI and periodic job call.
- `settings`: `TrainingSettings` (proposed as ``HubSettings.training``); `errors`: the error tree.

Import the heavy parts from their modules; this package imports nothing itself, so `hub.app.settings` can
import `hub.training.settings` without scikit-learn.
"""

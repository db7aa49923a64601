"""Retraining: triggers, datasets, the retrain job and its gate, and the background worker.

Pure modules (no store, broker or FastAPI; time passed in):

- `triggers`: `TriggerPolicy`, `decide`: when to retrain, and which guard blocks it.
- `dataset`: rows, weights, split keys and the evaluation slice, built from label and prediction rows.
- `base_sets`: the base set a retrain starts from: the simulator, or a C-MAPSS file read from disk.
- `regimes`: feature set 2's regime statistics learned from the field's raw windows, field rows restated under them.
- `far_floor`: the incumbent's false-alarm rate before its drift, from its reports and served decisions.
- `evaluate`: both models scored on the same slice, latency, `hub.gate.verdict.evaluate_gate`.
- `settings`: `TrainingSettings` (proposed as ``HubSettings.training``); `errors`: the error tree.

The shell, `service/` (the only part that touches the store):

- `service.training`: `TrainingService`, what the API, CLI and periodic job call.
- `service.retrain`: `Retrainer.run(job)`: fit, threshold, ONNX, parity, manifest, register, gate.
- `service.worker`: `TrainingWorker`, one job at a time in a thread, progress in the store.
- `service.loading`: what a retrain reads from the store (`build_datasets`, `far_before_drift`).

Import the heavy parts from their modules; this package imports nothing itself, so `hub.app.settings` can
import `hub.training.settings` without scikit-learn.
"""

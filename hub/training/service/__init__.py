"""The training package's shell: the only part of `hub.training` that touches the store.

- `training`: `TrainingService`, what the API, CLI and periodic job call (triggers in, jobs out).
- `retrain`: `Retrainer.run(job)`: fit, threshold, ONNX, parity, manifest, register, gate.
- `worker`: `TrainingWorker`, one job at a time in a thread, progress in the store; `execute_job`.
- `loading`: the store reads of a retrain: `build_datasets`, `far_before_drift`, `frozen_slice`.
- `intake`: `register_model`, a version made elsewhere registered and gated (or its gate skipped, audited).
"""

from hub.training.service.intake import Registered, register_model
from hub.training.service.loading import (
    build_datasets,
    drift_onset,
    far_before_drift,
    freeze_eval_split,
    load_feedback,
)
from hub.training.service.retrain import CREATED_BY, STAGES, LabelTransform, Retrainer, RetrainResult
from hub.training.service.training import TrainingService
from hub.training.service.worker import RESTART_ERROR, JobRunner, TrainingWorker, execute_job

__all__ = [
    "CREATED_BY",
    "RESTART_ERROR",
    "STAGES",
    "JobRunner",
    "LabelTransform",
    "Registered",
    "RetrainResult",
    "Retrainer",
    "TrainingService",
    "TrainingWorker",
    "build_datasets",
    "drift_onset",
    "execute_job",
    "far_before_drift",
    "freeze_eval_split",
    "load_feedback",
    "register_model",
]

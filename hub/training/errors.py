"""Errors of retraining, defined in the hub's one error tree (`hub.errors`, which draws it) and re-exported here.

Model-building failures (`models.errors.TrainingError`, `ConversionError`, `ParityError`) are
`shared.errors.ModelError`s; a job that meets one fails with its message.
"""

from hub.errors import RetrainBlockedError, RetrainError, TrainingBusyError, UnknownLabelSetError

__all__ = ["RetrainBlockedError", "RetrainError", "TrainingBusyError", "UnknownLabelSetError"]

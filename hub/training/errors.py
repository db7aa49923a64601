"""Errors of retraining, translated at the edges (HTTP status in hub/api/routes/retrain.py, CLI exit code).

    FleetloopError (shared.errors)
    └── RetrainError            a retrain cannot run or went wrong (no incumbent, no labels, …): job fails
        ├── TrainingBusyError   another job is queued or running (HTTP 409)
        ├── RetrainBlockedError a guard refuses the request, e.g. too few validated labels (HTTP 400)
        └── UnknownLabelSetError the requested label set does not exist (HTTP 404)

Model-building failures (`models.errors.TrainingError`, `ConversionError`, `ParityError`) are
`shared.errors.ModelError`s; a job that meets one fails with its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import FleetloopError

if TYPE_CHECKING:
    from hub.training.triggers import TriggerDecision


class RetrainError(FleetloopError):
    """A retrain that cannot run, or cannot finish."""


class TrainingBusyError(RetrainError):
    """Another training job is queued or running; `job_id` names it when known."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class RetrainBlockedError(RetrainError):
    """A trigger guard refused the request; `decision` says which and why."""

    def __init__(self, message: str, decision: TriggerDecision) -> None:
        super().__init__(message)
        self.decision = decision


class UnknownLabelSetError(RetrainError):
    """No label set with the requested id."""

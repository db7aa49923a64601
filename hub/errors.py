"""The hub's error tree, under the wire's (`shared.errors`). Errors are raised inside and translated only at
the edges: to HTTP statuses in `hub.api` (routes, and `hub.api.app` for `StoreError`), to messages and exit
codes in `hub.app.cli` (exit 1 refused by the hub, 2 usage or settings or an unreachable hub, 3 the hub failed).

    FleetloopError (shared.errors)
    ├── ContractError (shared.errors)
    │   └── SketchShapeError        drift sketches, or a sketch and its manifest, disagree on features or bins
    ├── ConfigError (shared.errors) settings that cannot work, e.g. no signing key outside dev mode
    ├── StoreError (shared.errors)  the hub store is unavailable (HTTP 503)
    ├── ModelError (shared.errors)  a version that cannot be served (HTTP 409 when a rollout meets one)
    │   ├── ModelIntegrityError (shared.errors)  sha256 or signature does not match
    │   ├── TrainingError (models.errors)        the data cannot make a model: the training job fails
    │   ├── ConversionError (models.errors)      skl2onnx cannot convert the estimator
    │   ├── ParityError (models.errors)          ONNX does not score like the estimator
    │   └── VersionExistsError (models.errors)   a version directory is there already
    ├── RegistryError               unknown version, duplicate or bad transition (HTTP 404 in rollouts)
    ├── DriftReferenceError         no healthy stats to take a drift reference from, or a bad window (HTTP 400)
    ├── RetrainError                a retrain cannot run or went wrong (no incumbent, no labels, …): the job fails
    │   ├── TrainingBusyError       another job is queued or running (HTTP 409; CLI exit 2)
    │   ├── RetrainBlockedError     a trigger guard refuses, e.g. too few validated labels (HTTP 400; CLI exit 2)
    │   └── UnknownLabelSetError    the requested label set does not exist (HTTP 404)
    ├── RolloutError                an invalid plan or transition, or a malformed record (HTTP 409; 422 for limits)
    │   ├── RolloutNotFound         no rollout with that id (HTTP 404)
    │   ├── RolloutConflict         the rollout changed, or another started, meanwhile (HTTP 409)
    │   └── ArtifactUnreachable     the hub cannot fetch the candidate's artifact URL itself: devices could not
    │                               either; the rollout is refused before anything is assigned (HTTP 409)
    ├── IncidentError               an incident action that cannot be done
    │   ├── IncidentNotFound        no incident with that id, or an unknown device (HTTP 404)
    │   ├── IncidentStateError      the incident is not in a state for it, e.g. resolving a resolved one (HTTP 409)
    │   └── IncidentInputError      the verdict or range does not fit, e.g. a confirmed fault without a type (400)
    └── HubClientError              the operator CLI's call to the hub API did not succeed (`hub.app.client`)
        ├── HubUnreachableError     nothing answers at the hub URL (CLI exit 2)
        ├── HubRefusedError         the hub answered 4xx: bad token, role, state or input (CLI exit 1)
        └── HubServerError          the hub answered 5xx or nonsense (CLI exit 3)

The hub's own classes are defined here; `hub.training.errors`, `hub.rollout.errors`, `hub.registry.service`
and `hub.drift.sketch` re-export theirs. The model-building errors stay in `models.errors` (a package below
the hub).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import ContractError, FleetloopError

if TYPE_CHECKING:
    from hub.training.triggers import TriggerDecision

__all__ = [
    "ArtifactUnreachable",
    "DriftReferenceError",
    "HubClientError",
    "HubRefusedError",
    "HubServerError",
    "HubUnreachableError",
    "IncidentError",
    "IncidentInputError",
    "IncidentNotFound",
    "IncidentStateError",
    "RegistryError",
    "RetrainBlockedError",
    "RetrainError",
    "RolloutConflict",
    "RolloutError",
    "RolloutNotFound",
    "SketchShapeError",
    "TrainingBusyError",
    "UnknownLabelSetError",
]


class SketchShapeError(ContractError, ValueError):
    """Sketches, or a sketch and its manifest, disagree on the number of features or bins."""


class RegistryError(FleetloopError):
    """A registry operation that cannot be done (unknown version, duplicate, bad transition)."""


class DriftReferenceError(FleetloopError):
    """A drift reference cannot be taken: a bad window, or too few healthy stats in it."""


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


class RolloutError(FleetloopError):
    """An invalid plan, an invalid transition (promoting a rolled-back rollout…) or a malformed record."""


class RolloutNotFound(RolloutError):
    """No rollout with this id (HTTP 404)."""


class RolloutConflict(RolloutError):
    """Another rollout is running, or this one changed meanwhile (HTTP 409)."""


class IncidentError(FleetloopError):
    """An incident action that cannot be done."""


class IncidentNotFound(IncidentError):
    """No incident with this id, or a device the hub does not know (HTTP 404)."""


class IncidentStateError(IncidentError):
    """The incident is not in a state for this action, or changed meanwhile (HTTP 409)."""


class IncidentInputError(IncidentError):
    """A verdict or time range that does not fit (HTTP 400)."""


class HubClientError(FleetloopError):
    """A call of the operator CLI to the hub API did not succeed; `exit_code` is the CLI's."""

    exit_code = 1


class HubUnreachableError(HubClientError):
    """Nothing answers at the hub URL (connection refused, timeout, bad host)."""

    exit_code = 2


class HubRefusedError(HubClientError):
    """The hub answered 4xx; `status` is the HTTP status."""

    exit_code = 1

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class HubServerError(HubClientError):
    """The hub answered 5xx, or something that is not JSON."""

    exit_code = 3


class ArtifactUnreachable(RolloutError):
    """The artifact URL devices would be given does not answer from the hub (wrong ``artifact_base_url``)."""

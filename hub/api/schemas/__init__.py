"""Request (`XCreate`) and response (`XPublic`) bodies of the hub API: what the OpenAPI schema documents.

One module per resource, named as its router in `hub.api.routes` (`base` holds what they share). Responses
are built from store rows with ``from_row``; requests refuse unknown fields like every wire message. Every
body is re-exported here.
"""

from hub.api.schemas.annotations import AnnotationCreate, AnnotationPublic, AnnotationStatus
from hub.api.schemas.base import ErrorPublic, Public
from hub.api.schemas.devices import DevicePublic
from hub.api.schemas.drift import DriftReportPublic
from hub.api.schemas.health import HealthPublic
from hub.api.schemas.labels import (
    CohortCount,
    CohortSharePublic,
    ConflictPublic,
    ConflictSummary,
    ExclusionPublic,
    LabelItemPublic,
    LabelSetCreated,
    LabelSetDetail,
    LabelSetPublic,
    PendingTrace,
    VotePublic,
)
from hub.api.schemas.models import VERSION_PATTERN, AuditPublic, ModelDetail, ModelPublic
from hub.api.schemas.queue import QueueItem
from hub.api.schemas.retrain import RetrainAccepted, RetrainCreate, TrainingJobPublic, TriggerPublic
from hub.api.schemas.rollouts import (
    ActionBody,
    LimitsCreate,
    PolicyCreate,
    RolloutCreate,
    RolloutDetail,
    RolloutPublic,
    StagePublic,
    TransitionPublic,
)
from hub.api.schemas.traces import PredictionPublic, TraceLabelPublic, TracePublic

__all__ = [
    "VERSION_PATTERN",
    "ActionBody",
    "AnnotationCreate",
    "AnnotationPublic",
    "AnnotationStatus",
    "AuditPublic",
    "CohortCount",
    "CohortSharePublic",
    "ConflictPublic",
    "ConflictSummary",
    "DevicePublic",
    "DriftReportPublic",
    "ErrorPublic",
    "ExclusionPublic",
    "HealthPublic",
    "LabelItemPublic",
    "LabelSetCreated",
    "LabelSetDetail",
    "LabelSetPublic",
    "LimitsCreate",
    "ModelDetail",
    "ModelPublic",
    "PendingTrace",
    "PolicyCreate",
    "PredictionPublic",
    "Public",
    "QueueItem",
    "RetrainAccepted",
    "RetrainCreate",
    "RolloutCreate",
    "RolloutDetail",
    "RolloutPublic",
    "StagePublic",
    "TraceLabelPublic",
    "TracePublic",
    "TrainingJobPublic",
    "TransitionPublic",
    "TriggerPublic",
    "VotePublic",
]

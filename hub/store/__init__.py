"""Hub storage behind one narrow interface (`HubStore`); SQLite today, PostgreSQL as a configuration change.

- `base`: the `HubStore` protocol and the small rows it takes and returns.
- `presence`: which status message wins (pure).
- `rows`: what a batch of messages becomes in the tables (pure).
- `schema`: the SQLite schema as sqlite-utils migrations.
- `sqlite`: `SqliteHubStore`.
- `factory`: `open_store(url)`.
"""

from hub.store.base import (
    DRIFT_EVENT,
    AnnotationRow,
    DeadLetter,
    DeadLetterRow,
    Device,
    DeviceMessage,
    DriftReportRow,
    EventRow,
    HubStore,
    IngestRecord,
    IngestResult,
    ModelEventRow,
    PredictionRow,
    Rejected,
    StatsRow,
    StoreCounts,
)
from hub.store.factory import open_store
from hub.store.registry import MODEL_STATUSES, AuditRow, ModelVersionRow

__all__ = [
    "DRIFT_EVENT",
    "MODEL_STATUSES",
    "AnnotationRow",
    "AuditRow",
    "DeadLetter",
    "DeadLetterRow",
    "Device",
    "DeviceMessage",
    "DriftReportRow",
    "EventRow",
    "HubStore",
    "IngestRecord",
    "IngestResult",
    "ModelEventRow",
    "ModelVersionRow",
    "PredictionRow",
    "Rejected",
    "StatsRow",
    "StoreCounts",
    "open_store",
]

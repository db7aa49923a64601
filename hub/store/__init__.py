"""Hub storage behind small role protocols (`HubStore` is all of them); SQLite today, PostgreSQL by configuration.

- `rows`: the frozen rows and records every store takes and returns, and constants like `DRIFT_EVENT` (no database).
- `ports`: one protocol per role (`IngestStore`, `DeviceStore`, `LabelStore`, `DriftStore`, `RegistryStore`,
  `RolloutStore`, `TrainingStore`, `IncidentStore`, …) and `HubStore`, their union plus `close`.
- `presence`: which status message wins (pure).
- `sqlite`: `SqliteHubStore`, one query module per role, the pure batch-to-rows builder and the migrations.
- `factory`: `open_store(url)`.
"""

from hub.store.factory import open_store
from hub.store.ports import (
    DeviceStore,
    DriftStore,
    HubStore,
    IncidentStore,
    IngestStore,
    LabelStore,
    RegistryStore,
    RolloutStore,
    SequenceStore,
    TrainingStore,
)
from hub.store.rows import (
    DRIFT_EVENT,
    MODEL_STATUSES,
    SEQUENCE_GAP_EVENT,
    AnnotationRow,
    AuditRow,
    DeadLetter,
    DeadLetterRow,
    Device,
    DeviceMessage,
    DriftReportRow,
    EventRow,
    IngestRecord,
    IngestResult,
    ModelEventRow,
    ModelVersionRow,
    PredictionRow,
    Rejected,
    SequenceHole,
    SequenceUpdate,
    StatsRow,
    StoreCounts,
)

__all__ = [
    "DRIFT_EVENT",
    "MODEL_STATUSES",
    "SEQUENCE_GAP_EVENT",
    "AnnotationRow",
    "AuditRow",
    "DeadLetter",
    "DeadLetterRow",
    "Device",
    "DeviceMessage",
    "DeviceStore",
    "DriftReportRow",
    "DriftStore",
    "EventRow",
    "HubStore",
    "IncidentStore",
    "IngestRecord",
    "IngestResult",
    "IngestStore",
    "LabelStore",
    "ModelEventRow",
    "ModelVersionRow",
    "PredictionRow",
    "RegistryStore",
    "Rejected",
    "RolloutStore",
    "SequenceHole",
    "SequenceStore",
    "SequenceUpdate",
    "StatsRow",
    "StoreCounts",
    "TrainingStore",
    "open_store",
]

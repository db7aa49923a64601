"""A technician's verdict on an incident as annotations: the same explicit feedback as ``POST /annotations``. Pure.

=================  ========  ==========  ==========  ============================================================
verdict            label     signal      confidence  why
=================  ========  ==========  ==========  ============================================================
confirmed_fault    fault     confirmed   1.0         inspected, the fault is there (a fault type is required)
false_alarm        no_fault  correction  1.0         inspected, the machine is fine: the model was wrong
no_fault_found     no_fault  confirmed   0.7         inspected, nothing found; an intermittent fault is possible
missed_failure     fault     correction  1.0         a failure no alarm covered: the model missed it (reported on a
                                                     device and time range, a fault type is required)
=================  ========  ==========  ==========  ============================================================

An alarm incident's verdict labels each of its alarm windows by trace ID (they join as any trace annotation);
a missed failure labels the device's time range. Annotation ids are derived from the incident and the trace
(UUIDv5), so writing a verdict again stores nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Literal, get_args

from hub.errors import IncidentInputError
from shared.messages import Annotation

Verdict = Literal["confirmed_fault", "false_alarm", "no_fault_found"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
MISSED_FAILURE = "missed_failure"
NFF_CONFIDENCE = 0.7
_NAMESPACE = uuid.UUID("5f1d3c2e-6f0a-4d3e-9b7c-1a2b3c4d5e6f")
_MAPPING = {
    "confirmed_fault": ("fault", "confirmed", 1.0),
    "false_alarm": ("no_fault", "correction", 1.0),
    "no_fault_found": ("no_fault", "confirmed", NFF_CONFIDENCE),
    MISSED_FAILURE: ("fault", "correction", 1.0),
}


def check(verdict: str, fault_type: str | None) -> None:
    """IncidentInputError unless `verdict` is known and carries a fault type exactly when it names a fault."""
    if verdict not in _MAPPING:
        raise IncidentInputError(f"unknown verdict {verdict!r}: use {', '.join(VERDICTS)}")
    if _MAPPING[verdict][0] == "fault" and not fault_type:
        raise IncidentInputError(f"a {verdict.replace('_', ' ')} needs a fault_type (e.g. bearing)")
    if _MAPPING[verdict][0] == "no_fault" and fault_type:
        raise IncidentInputError(f"a {verdict.replace('_', ' ')} has no fault_type")


def annotation_id(incident_id: str, target: str) -> str:
    """The id of the annotation an incident's verdict puts on `target` (a trace id, or the range)."""
    return str(uuid.uuid5(_NAMESPACE, f"{incident_id}:{target}"))


def trace_annotations(
    incident_id: str, device_id: str, trace_ids: Iterable[str], *, verdict: str, technician_id: str, now: float,
    fault_type: str | None = None, note: str | None = None, model_version: str | None = None,
) -> list[Annotation]:
    """One annotation per alarm window of the incident.

    >>> [a] = trace_annotations("i1", "pump-1", ["t1"], verdict="false_alarm", technician_id="alice", now=5.0)
    >>> a.trace_id, a.label, a.signal, a.technician_id, a.annotation_id == annotation_id("i1", "t1")
    ('t1', 'no_fault', 'correction', 'alice', True)
    """
    check(verdict, fault_type)
    label, signal, confidence = _MAPPING[verdict]
    return [
        Annotation(annotation_id=annotation_id(incident_id, t), device_id=device_id, ts=now,
                   model_version=model_version, trace_id=t, label=label, signal=signal,  # type: ignore[arg-type]
                   confidence=confidence, fault_type=fault_type, technician_id=technician_id, note=note)
        for t in trace_ids
    ]


def range_annotation(
    incident_id: str, device_id: str, start_ts: float, end_ts: float, *, technician_id: str, now: float,
    fault_type: str, note: str | None = None, model_version: str | None = None,
) -> Annotation:
    """The fault annotation of a missed failure over ``[start_ts, end_ts]``."""
    check(MISSED_FAILURE, fault_type)
    label, signal, confidence = _MAPPING[MISSED_FAILURE]
    return Annotation(annotation_id=annotation_id(incident_id, "range"), device_id=device_id, ts=now,
                      model_version=model_version, start_ts=start_ts, end_ts=end_ts, label=label,  # type: ignore[arg-type]
                      signal=signal, confidence=confidence, fault_type=fault_type,  # type: ignore[arg-type]
                      technician_id=technician_id, note=note)

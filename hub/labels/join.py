"""Resolve annotations to the predictions they label, by trace_id or by a device's time range.

An annotation whose prediction the hub has not seen yet is *pending*: devices send only anomalies and a
sample of predictions, and a technician can be faster than the outbox. Pending annotations are kept and
join on a later call once the prediction is known (`JoinResult.missing_trace_ids` lists what to ask the
devices to upload); `validate` retires them as stale only after the TTL.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable

from hub.labels.types import AnnotationRecord, Exclusion, Joined, JoinResult, PredictionRef


def _index(predictions: Iterable[PredictionRef]) -> dict[str, PredictionRef]:
    by_trace: dict[str, PredictionRef] = {}
    for prediction in predictions:
        known = by_trace.setdefault(prediction.trace_id, prediction)
        if known != prediction:
            raise ValueError(f"trace {prediction.trace_id} appears twice with different contents")
    return by_trace


def join(annotations: Iterable[AnnotationRecord], predictions: Iterable[PredictionRef]) -> JoinResult:
    """Pair each annotation with the predictions it labels.

    - With a `trace_id`: that trace's prediction, if known and from the same device (a trace of another
      device is rejected as ``device_mismatch``); an unknown trace is pending. A range given alongside a
      trace_id is ignored: the trace is the more precise target.
    - With a range only: every prediction of the same device whose window ends (`PredictionRef.reading_ts`:
      the machine's time, not when the gateway scored it, which a backlog may delay) in ``[start_ts, end_ts]``
      (both ends included); none yet is pending.

    Results are sorted (by annotation, then trace), so the input order never matters.

    Parameters
    ----------
    annotations : iterable of AnnotationRecord
        Annotation ids must be unique (they are the store's key).
    predictions : iterable of PredictionRef
        The known predictions; a trace given twice must be given identically.

    Examples
    --------
    >>> p = [PredictionRef("t1", "pump-1", 10.0), PredictionRef("t2", "pump-1", 20.0)]
    >>> a = [
    ...     AnnotationRecord("a1", "pump-1", "fault", "tech", "confirmed", 1.0, 30.0, trace_id="t2"),
    ...     AnnotationRecord("a2", "pump-1", "fault", "tech", "confirmed", 1.0, 30.0, start_ts=0.0, end_ts=15.0),
    ...     AnnotationRecord("a3", "pump-1", "fault", "tech", "confirmed", 1.0, 30.0, trace_id="t9"),
    ... ]
    >>> result = join(a, p)
    >>> [(j.annotation.annotation_id, j.prediction.trace_id, j.via) for j in result.joined]
    [('a1', 't2', 'trace'), ('a2', 't1', 'range')]
    >>> [r.annotation_id for r in result.pending], result.missing_trace_ids
    (['a3'], ('t9',))
    """
    by_trace = _index(predictions)
    by_device: dict[str, list[PredictionRef]] = defaultdict(list)
    for prediction in by_trace.values():
        by_device[prediction.device_id].append(prediction)
    for device_predictions in by_device.values():
        device_predictions.sort(key=lambda p: (p.reading_ts, p.trace_id))

    joined: list[Joined] = []
    pending: list[AnnotationRecord] = []
    rejected: list[Exclusion] = []
    seen: set[str] = set()
    for annotation in sorted(annotations, key=lambda a: a.annotation_id):
        if annotation.annotation_id in seen:
            raise ValueError(f"annotation {annotation.annotation_id} appears twice")
        seen.add(annotation.annotation_id)
        if annotation.trace_id is not None:
            known = by_trace.get(annotation.trace_id)
            if known is None:
                pending.append(annotation)
            elif known.device_id != annotation.device_id:
                detail = f"trace {known.trace_id} belongs to {known.device_id}, not {annotation.device_id}"
                rejected.append(Exclusion(annotation.annotation_id, known.trace_id, "device_mismatch", detail))
            else:
                joined.append(Joined(annotation, known, "trace"))
            continue
        assert annotation.start_ts is not None and annotation.end_ts is not None  # checked by the record
        candidates = by_device.get(annotation.device_id, [])
        lo = bisect.bisect_left(candidates, annotation.start_ts, key=lambda p: p.reading_ts)
        hi = bisect.bisect_right(candidates, annotation.end_ts, key=lambda p: p.reading_ts)
        if lo == hi:
            pending.append(annotation)
        joined.extend(Joined(annotation, p, "range") for p in sorted(candidates[lo:hi], key=lambda p: p.trace_id))
    return JoinResult(joined=tuple(joined), pending=tuple(pending), rejected=tuple(rejected))


def contested(result: JoinResult) -> JoinResult:
    """Only the joined pairs of traces that two or more annotations label (no pending, no rejected).

    A trace with one annotation can neither conflict (a lone vote always wins) nor give evidence of an
    annotator's reliability (that needs a peer on the same trace), so conflicts computed from this are the
    conflicts of the whole result, at the cost of the contested traces only: one range annotation over a
    device's 30,000 predictions no longer puts 30,000 traces through validation.

    >>> p = [PredictionRef("t1", "d", 1.0), PredictionRef("t2", "d", 2.0)]
    >>> a = [AnnotationRecord("a1", "d", "fault", "x", "confirmed", 1.0, 3.0, start_ts=0.0, end_ts=5.0),
    ...      AnnotationRecord("a2", "d", "no_fault", "y", "confirmed", 1.0, 3.0, trace_id="t2")]
    >>> [(j.annotation.annotation_id, j.prediction.trace_id) for j in contested(join(a, p)).joined]
    [('a1', 't2'), ('a2', 't2')]
    """
    count: defaultdict[str, int] = defaultdict(int)
    for j in result.joined:
        count[j.prediction.trace_id] += 1
    return JoinResult(joined=tuple(j for j in result.joined if count[j.prediction.trace_id] > 1), pending=(),
                      rejected=())

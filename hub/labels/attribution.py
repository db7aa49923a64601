"""Who an annotation speaks for: a technician through the API, or a device over MQTT. Pure.

A device can put any ``technician_id`` on the annotations it publishes, and the hub cannot check it (no
registry says which technicians work a device), so the MQTT ingest attributes them to the device itself
(`device_annotator`: ``technician_id = "device:<device_id>"``, the claimed id kept in the note). In the label
pipeline a device then counts as one annotator (its repeated votes on a trace are duplicates; its reliability is
measured like a technician's), each of its votes weighs `DEVICE_VOTE_WEIGHT` of a technician's of the same
kind, and at most `max_per_device` annotations of each device enter validation (`cap_device_votes`): the rest are
excluded as ``device_cap``, the oldest kept, so a flood cannot displace what came before it or become most of a
label set. A range annotation (a maintenance log's "failed between t1 and t2", made at the machine) counts once,
with every window it covers: it is one statement of one technician, and capping its windows would keep most of a
reported failure out of training.
"""

from __future__ import annotations

from collections import defaultdict

from hub.labels.types import Exclusion, JoinResult

DEVICE_PREFIX = "device:"
DEVICE_VOTE_WEIGHT = 0.4
"""A device-sent vote weighs one rung down the signal ladder (`hub.labels.signals`): a technician's
inspection outweighs a device's claim of the same kind."""
MAX_PER_DEVICE = 200
"""Default of `LabelSettings.max_device_votes`."""


def device_annotator(device_id: str) -> str:
    """The annotator id of annotations `device_id` sent over MQTT.

    >>> device_annotator("pump-1"), is_device_sent("device:pump-1"), is_device_sent("alice")
    ('device:pump-1', True, False)
    """
    return f"{DEVICE_PREFIX}{device_id}"


def is_device_sent(technician_id: str) -> bool:
    return technician_id.startswith(DEVICE_PREFIX)


def annotator_weight(technician_id: str) -> float:
    """The multiplier of the annotator's source: 1 for a technician, `DEVICE_VOTE_WEIGHT` for a device."""
    return DEVICE_VOTE_WEIGHT if is_device_sent(technician_id) else 1.0


def cap_device_votes(result: JoinResult, max_per_device: int) -> JoinResult:
    """At most `max_per_device` of each device's own annotations (with every window each covers), the oldest
    first; the rest move to ``rejected`` as ``device_cap``.

    >>> from hub.labels.types import AnnotationRecord, PredictionRef
    >>> from hub.labels.join import join
    >>> p = [PredictionRef(f"t{i}", "d", float(i)) for i in range(3)]
    >>> a = [AnnotationRecord(f"a{i}", "d", "fault", "device:d", "confirmed", 1.0, 10.0 + i, trace_id=f"t{i}")
    ...      for i in range(3)]
    >>> capped = cap_device_votes(join(a, p), 2)
    >>> [j.annotation.annotation_id for j in capped.joined], [(e.annotation_id, e.reason) for e in capped.rejected]
    (['a0', 'a1'], [('a2', 'device_cap')])
    """
    if max_per_device < 0:
        raise ValueError("max_per_device must be ≥ 0")
    used: defaultdict[str, set[str]] = defaultdict(set)
    kept, capped = [], []
    order = sorted(result.joined, key=lambda j: (j.annotation.created_ts, j.annotation.annotation_id,
                                                 j.prediction.trace_id))
    for j in order:
        who = j.annotation.technician_id
        if is_device_sent(who) and j.annotation.annotation_id not in used[who]:
            if len(used[who]) >= max_per_device:
                detail = f"{who} already contributes {max_per_device} device-sent annotations (max_device_votes)"
                capped.append(Exclusion(j.annotation.annotation_id, j.prediction.trace_id, "device_cap", detail))
                continue
            used[who].add(j.annotation.annotation_id)
        kept.append(j)
    kept.sort(key=lambda j: (j.annotation.annotation_id, j.prediction.trace_id))
    return JoinResult(joined=tuple(kept), pending=result.pending, rejected=(*result.rejected, *capped))

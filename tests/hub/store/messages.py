"""Device messages for the store tests: one valid message of each kind, with overridable fields."""

from __future__ import annotations

from hub.store import IngestRecord
from shared.ids import new_id
from shared.messages import Annotation, Anomaly, Sample, Stats, Status

T0 = 1_700_000_000.0


def anomaly(device: str = "dev-1", ts: float = T0, **kw: object) -> Anomaly:
    fields: dict[str, object] = dict(device_id=device, ts=ts, trace_id=new_id(), window_start=ts - 10,
                                     window_end=ts, score=0.93, threshold=0.5, decision=True,
                                     features=[0.1, -2.5, 1e300, 3.0], model_version="v1")
    return Anomaly(**{**fields, **kw})  # type: ignore[arg-type]


def sample(device: str = "dev-1", ts: float = T0) -> Sample:
    return Sample(device_id=device, ts=ts, trace_id=new_id(), window_start=ts - 10, window_end=ts, score=0.2,
                  threshold=0.5, decision=False, features=[1.0, 2.0], reason="random", model_version="v1")


def stats(device: str = "dev-1", period_end: float = T0, **kw: object) -> Stats:
    fields: dict[str, object] = dict(device_id=device, ts=period_end, period_start=period_end - 60,
                                     period_end=period_end, windows=100, anomalies=3, samples=1, bad_readings=0,
                                     bad_rows=0, inference_errors=0, nan_scores=0,
                                     feature_hist=[[10, 80, 10], [50, 50]], score_hist=[90, 10],
                                     latency_p50_ms=1.5, latency_p99_ms=4.0)
    return Stats(**{**fields, **kw})  # type: ignore[arg-type]


def annotation(device: str = "dev-1", trace_id: str | None = None, ts: float = T0) -> Annotation:
    return Annotation(device_id=device, ts=ts, trace_id=trace_id or new_id(), label="fault",
                      fault_type="bearing", technician_id="tech-7", signal="confirmed", note="noisy")


def status(device: str, state: str, ts: float, **kw: object) -> Status:
    return Status(device_id=device, ts=ts, state=state, **kw)  # type: ignore[arg-type]


def rec(message: object, at: float = T0 + 1) -> IngestRecord:
    return IngestRecord(message, at)  # type: ignore[arg-type]

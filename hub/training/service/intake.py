"""A model made elsewhere joins the registry through the same gate as a retrain, or an audited skip.

`register_model` copies and signs a version directory as a ``candidate`` with no gate decision (a rollout
refuses it: `hub.registry.approval`), then judges it against the active version on the frozen evaluation slice
of the newest label set, as a retrain's gate does (block bootstrap, same tolerances): the verdict moves it to
``candidate`` (pass), ``rejected`` (fail) or ``insufficient_data``. Its ONNX/scikit-learn parity is the one
its maker recorded in the manifest (no estimator comes with it); none recorded fails the parity check. With
`skip_gate` it is cleared for rollout unjudged, the reason and who skipped recorded as its gate decision.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.gate.summary import gate_summary
from hub.registry.service import Registry
from hub.store.ports import HubStore
from hub.store.rows import ModelVersionRow
from hub.training.errors import RetrainError
from hub.training.evaluate import gate_candidate
from hub.training.service.loading import frozen_slice
from hub.training.service.retrain import VERDICT_STATUS
from hub.training.settings import TrainingSettings
from models.onnx_export import ParityReport
from models.version import read_version
from shared.manifest import ModelManifest, same_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered:
    """The registered version (its status after the gate) and the gate's decision in short."""

    row: ModelVersionRow
    summary: dict[str, Any] | None


def recorded_parity(manifest: ModelManifest, settings: TrainingSettings) -> ParityReport:
    """The parity its maker recorded (``parity_max_abs_diff``, ``parity_label_flips`` metrics); NaN (a failed
    parity check) when it recorded none."""
    m = manifest.metrics
    flips = m.get("parity_label_flips")
    return ParityReport(n=0, max_abs_diff=float(m.get("parity_max_abs_diff", math.nan)),
                        label_flips=int(flips) if flips is not None and math.isfinite(flips) else 1 << 30,
                        threshold=manifest.threshold, allowed_abs_diff=settings.gate.max_parity_abs_diff,
                        allowed_label_flips=settings.gate.max_parity_flips)


def register_model(store: HubStore, registry: Registry, settings: TrainingSettings, path: Path, *, actor: str,
                   reason: str, skip_gate: bool, now: float) -> Registered:
    """Register the version directory `path` and gate it (or skip the gate, audited). RetrainError when it cannot
    be gated (no active version, other inputs than the active version's); RegistryError, ModelError for a bad
    directory or a version already registered."""
    if not reason.strip():
        raise RetrainError("registering a model needs a reason")
    manifest, onnx_bytes = read_version(path)  # verifies the sha256
    incumbent = registry.active_version()
    if not skip_gate:
        if incumbent is None:
            raise RetrainError("no active version to gate against: provision the first version as active, or "
                               "skip the gate with a reason")
        inc_manifest = registry.manifest(incumbent)
        assert inc_manifest is not None  # the registry just named it
        if not same_inputs(inc_manifest, manifest):
            what = "windows or features" if inc_manifest.window != manifest.window else "regime statistics"
            raise RetrainError(f"{manifest.version} reads other {what} than the active {incumbent}: the gate cannot "
                               "score both on the same slice; skip the gate with a reason")
    row = registry.register(path, actor=actor, reason=reason, status="candidate")
    if skip_gate:
        row = registry.skip_gate(row.version, actor=actor, reason=reason)
        return Registered(row, gate_summary(row.gate, status=row.status))
    assert incumbent is not None
    try:
        inc_manifest_, inc_bytes = read_version(registry.path(incumbent))
        labels = store.label_sets(limit=1)
        evaluation, plan = frozen_slice(store, labels[0].id if labels else None, inc_manifest_, settings, now=now)
        run = gate_candidate(evaluation, candidate_onnx=onnx_bytes, candidate_threshold=manifest.threshold,
                             incumbent_onnx=inc_bytes, incumbent_threshold=inc_manifest_.threshold,
                             incumbent_version=incumbent, parity=recorded_parity(manifest, settings),
                             config=settings.gate.config(), latency_runs=settings.latency_runs,
                             split=plan.to_dict())
    except Exception as exc:  # a registered candidate is never left un-gated
        registry.transition(row.version, "rejected", actor=actor, action="gate",
                            reason=f"the gate could not run: {exc}")
        raise
    d = run.decision
    status = VERDICT_STATUS[d.verdict]
    why = f"gate {d.verdict} against {incumbent} on the frozen slice ({plan.reason})" + (
        "" if d.passed else ": " + "; ".join(d.reasons))
    row = registry.transition(row.version, status, actor=actor, action="gate", reason=why, gate=run.record)
    log.info("registered %s by %s: %s", row.version, actor, why)
    return Registered(row, gate_summary(run.record, status=status))

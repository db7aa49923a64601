"""``/models``: the model registry (versions, gate decisions, audit trail) and the signed artifacts devices fetch.

``GET /models/{version}/artifact`` needs **no token**: devices have no API tokens. What protects them is not
the transport but the artifact itself: every version is signed by the hub's Ed25519 key, and an agent
verifies the signature (against its pinned public key), the hub's signed assignment and the sha256 in it
before loading it, so an artifact fetched from anywhere, tampered or swapped, is refused. Model files are not
secret, but a version the gate (or an operator) rejected was never approved: its artifact is not served (404).

``POST /models`` (operators) registers a version made elsewhere through the same gate as a retrain, or with
an audited ``skip_gate``: a rollout takes no candidate without a passed or skipped gate decision.
``POST /models/{version}/skip-gate`` clears one already registered (a candidate, or one the gate could not judge).
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from hub.api.deps import AUTH_RESPONSES, Operator, Reader, RegistryDep, TrainingDep, error
from hub.api.schemas.base import ActionBody
from hub.api.schemas.models import (
    VERSION_PATTERN,
    AuditPublic,
    GateSummaryPublic,
    ModelDetail,
    ModelPublic,
    ModelRegister,
    ModelRegistered,
)
from hub.errors import RegistryError, RetrainError
from hub.store.rows import ModelStatus
from shared.errors import ModelError

router = APIRouter(prefix="/models", tags=["models"])

Version = Annotated[str, Path(min_length=1, max_length=128, pattern=VERSION_PATTERN)]
UNAVAILABLE = error(503, "This hub runs without a model registry")


@router.get("", summary="Registered model versions (newest first)", responses={**AUTH_RESPONSES, **UNAVAILABLE})
def list_models(
    _: Reader,
    registry: RegistryDep,
    status_: Annotated[ModelStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ModelPublic]:
    return [ModelPublic.from_row(r) for r in registry.store.model_versions(status=status_, limit=limit)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a version made elsewhere and gate it against the active version",
    responses={**AUTH_RESPONSES, **error(409, "Already registered, or it cannot be gated (no active version, other "
                                              "inputs than the active version's)"),
               **error(400, "The body is not JSON, or the path is not a readable version directory (missing "
                            "files, sha256 mismatch)"),
               **error(503, "This hub runs without a model registry or training")},
)
def register_model(body: ModelRegister, principal: Operator, training: TrainingDep) -> ModelRegistered:
    """Copies and signs the version directory `path` (on the hub host), then judges it on the frozen evaluation
    slice against the active version, as a retrain's gate does: it becomes a ``candidate`` (pass), ``rejected``
    (fail) or ``insufficient_data``. Only a passed gate, or one skipped with ``skip_gate`` and a reason (recorded
    as its gate decision and in its audit trail), lets a rollout take it."""
    actor = principal.role + (f":{body.actor}" if body.actor else "")
    try:
        registered = training.register_model(FsPath(body.path), actor=actor, reason=body.reason,
                                             skip_gate=body.skip_gate)
    except (RegistryError, RetrainError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except (ModelError, OSError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"{body.path}: {exc}") from None
    summary = registered.summary
    return ModelRegistered(**ModelPublic.from_row(registered.row).model_dump(),
                           gate=None if summary is None else GateSummaryPublic(**summary))


@router.get("/{version}", summary="One version with its gate decision and audit trail",
            responses={**AUTH_RESPONSES, **error(404, "No such version in the registry"), **UNAVAILABLE})
def get_model(version: Version, _: Reader, registry: RegistryDep) -> ModelDetail:
    row = registry.store.model_version(version)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model version {version} in the registry")
    return ModelDetail(
        **ModelPublic.from_row(row).model_dump(), signature=row.signature, manifest=row.manifest, gate=row.gate,
        audit=[AuditPublic.from_row(a) for a in registry.store.model_audit(version=version, limit=10_000)],
    )


@router.post(
    "/{version}/skip-gate",
    summary="Clear a registered version for rollout without the gate's judgement (audited)",
    responses={**AUTH_RESPONSES, **error(404, "No such version in the registry"),
               **error(409, "The version is neither a candidate nor one the gate could not judge (insufficient_data)"),
               **error(400, "The body is not JSON"), **UNAVAILABLE},
)
def skip_gate(version: Version, body: ActionBody, principal: Operator, registry: RegistryDep) -> ModelPublic:
    """A candidate, or a version the gate could not judge for too few labels (``insufficient_data``: say one with
    regime statistics learned from the field before labels came back), becomes a ``candidate`` whose gate decision
    is ``skipped``, with who and why in its audit trail; its rollout's stages (and the label-free estimate on their
    traffic) still judge it. A version the gate found worse (``rejected``) cannot be cleared."""
    if registry.store.model_version(version) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model version {version} in the registry")
    actor = principal.role + (f":{body.actor}" if body.actor else "")
    try:
        row = registry.skip_gate(version, actor=actor, reason=body.reason)
    except RegistryError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return ModelPublic.from_row(row)


@router.get(
    "/{version}/artifact",
    summary="The signed artifact devices fetch (no token)",
    response_class=Response,
    responses={
        200: {"content": {"application/gzip": {}}, "description": "model.onnx, manifest.json, manifest.sig"},
        **error(404, "No such version in the registry, or a rejected one"),
        **UNAVAILABLE,
    },
)
def get_artifact(version: Version, registry: RegistryDep) -> Response:
    """A deterministic ``.tar.gz`` of ``model.onnx``, ``manifest.json`` and ``manifest.sig``. No token: agents
    verify the Ed25519 signature with their pinned key and the sha256 of their assignment before loading it."""
    row = registry.store.model_version(version)
    if row is None or not registry.approved(version):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no approved model version {version} in the registry")
    return Response(
        content=registry.artifact(version), media_type="application/gzip",
        headers={"ETag": f'"{row.sha256}"', "Content-Disposition": f'attachment; filename="{version}.tar.gz"'},
    )

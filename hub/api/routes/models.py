"""``/models``: the model registry (versions, gate decisions, audit trail) and the signed artifacts devices fetch.

``GET /models/{version}/artifact`` needs **no token**: devices have no API tokens. What protects them is not
the transport but the artifact itself: every version is signed by the hub's Ed25519 key, and an agent
verifies the signature (against its pinned public key), the hub's signed assignment and the sha256 in it
before loading it, so an artifact fetched from anywhere, tampered or swapped, is refused. Model files are not
secret, but a version the gate (or an operator) rejected was never approved: its artifact is not served (404).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from hub.api.deps import AUTH_RESPONSES, Reader, RegistryDep, error
from hub.api.schemas.models import VERSION_PATTERN, AuditPublic, ModelDetail, ModelPublic
from hub.store.rows import ModelStatus

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

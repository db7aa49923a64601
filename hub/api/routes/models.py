"""``/models``: the model registry (versions, gate decisions, audit trail) and the signed artifacts devices fetch.

``GET /models/{version}/artifact`` needs **no token**: devices have no API tokens. What protects them is not
the transport but the artifact itself: every version is signed by the hub's Ed25519 key, and an agent
verifies the signature (against its pinned public key), the hub's signed assignment and the sha256 in it
before loading it, so an artifact fetched from anywhere, tampered or swapped, is refused. Model files are not
secret, but a version the gate (or an operator) rejected was never approved: its artifact is not served (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from hub.api.deps import AUTH_RESPONSES, Reader, error
from hub.api.schemas import Public
from hub.registry.service import Registry
from hub.store import AuditRow, ModelVersionRow
from hub.store.rows import ModelStatus

router = APIRouter(prefix="/models", tags=["models"])

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
Version = Annotated[str, Path(min_length=1, max_length=128, pattern=VERSION_PATTERN)]
UNAVAILABLE = error(503, "This hub runs without a model registry")


def get_registry(request: Request) -> Registry:
    """The registry `create_app` was given; 503 when the hub runs without one."""
    registry: Registry | None = getattr(request.app.state, "registry", None)
    if registry is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="this hub runs without a model registry")
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


class ModelPublic(Public):
    """A registered version: its status and where it came from."""

    version: str
    parent_version: str | None
    status: str
    created_ts: float
    updated_ts: float
    created_by: str
    reason: str
    trigger_id: str | None
    sha256: str

    @classmethod
    def from_row(cls, r: ModelVersionRow) -> ModelPublic:
        return cls(version=r.version, parent_version=r.parent_version, status=r.status, created_ts=r.created_ts,
                   updated_ts=r.updated_ts, created_by=r.created_by, reason=r.reason, trigger_id=r.trigger_id,
                   sha256=r.sha256)


class AuditPublic(Public):
    """One change to a version: who, when, what, why, and the numbers behind it."""

    ts: float
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str
    details: dict[str, Any]

    @classmethod
    def from_row(cls, a: AuditRow) -> AuditPublic:
        return cls(ts=a.ts, actor=a.actor, action=a.action, from_status=a.from_status, to_status=a.to_status,
                   reason=a.reason, details=a.details)


class ModelDetail(ModelPublic):
    """A version with its signature, manifest, gate decision and complete audit trail (oldest first)."""

    signature: str
    manifest: dict[str, Any]
    gate: dict[str, Any] | None
    audit: list[AuditPublic]


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

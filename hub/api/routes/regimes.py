"""``/regimes``: the active version's regime statistics (feature set 2) beside what the devices' raw windows give."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from hub.api.deps import AUTH_RESPONSES, LabelSettingsDep, NowDep, Reader, RegistryDep, SettingsDep, StoreDep, error
from hub.training.service.regimes import regimes_now

router = APIRouter(prefix="/regimes", tags=["regimes"], responses=AUTH_RESPONSES)


@router.get("", summary="The active regime statistics against the field's raw windows",
            responses={**error(404, "No active model version"),
                       **error(409, "The active version is of feature set 1: it has no regime statistics")})
def field_regimes(_: Reader, store: StoreDep, registry: RegistryDep, settings: SettingsDep, labels: LabelSettingsDep,
                  now: NowDep) -> dict[str, Any]:
    """Each active regime's centroid and fitted readings, the field's readings nearest it and how many of those are
    far from every active centroid (beyond ``far_spreads`` times the regime's own spread of its settings: the field
    runs in a regime the model has not seen), and the regimes k-means finds in the field's readings alone. The
    field is the raw windows received within ``training.regimes_since_s`` (default the label TTL). Read-only."""
    version = registry.active_version()
    manifest = None if version is None else registry.manifest(version)
    if manifest is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no active model version")
    if manifest.regimes is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"the active version {manifest.version} uses feature "
                            f"set {manifest.window.feature_set_version}: it has no regime statistics")
    training = settings.training
    since = now - (training.regimes_since_s if training.regimes_since_s is not None else labels.ttl_s)
    return {"ts": now, "since": since, **regimes_now(store, manifest, training, since=since).to_dict()}

"""``/devices``: the registry and presence."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from hub.api.deps import AUTH_RESPONSES, Reader, StoreDep, error
from hub.api.schemas.devices import DevicePublic

router = APIRouter(prefix="/devices", tags=["devices"], responses=AUTH_RESPONSES)


@router.get("", summary="Every known device")
def list_devices(_: Reader, store: StoreDep) -> list[DevicePublic]:
    """Devices by id, with presence (from their retained status and last will) and what they serve."""
    return [DevicePublic.from_device(d) for d in store.devices()]


@router.get("/{device_id}", summary="One device", responses=error(404, "The device is not known to the hub"))
def get_device(device_id: Annotated[str, Path(max_length=64)], _: Reader, store: StoreDep) -> DevicePublic:
    device = store.device(device_id)
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"device {device_id} is not known to the hub")
    return DevicePublic.from_device(device)

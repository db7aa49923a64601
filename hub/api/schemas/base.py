"""What every body of the hub API shares: `Public` (the base of responses), `ErrorPublic`, and the pydantic
forms of the wire contract's constrained types (`shared.messages` holds their msgspec forms)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import DEVICE_ID_PATTERN

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class Public(BaseModel):
    """Base of response bodies: documented fields only."""

    model_config = ConfigDict(extra="forbid")


class ErrorPublic(BaseModel):
    """An error: what went wrong and, where it helps, what to send instead."""

    detail: str

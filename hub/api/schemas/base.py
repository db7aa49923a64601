"""What every body of the hub API shares: `Public` (the base of responses), `ErrorPublic`, and the pydantic
forms of the wire contract's constrained types (`shared.messages` holds their msgspec forms)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import DEVICE_ID_PATTERN

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
ActorName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
"""Who acts, as the caller states it (tokens carry only a role): recorded as ``<role>:<actor>``."""


class Public(BaseModel):
    """Base of response bodies: documented fields only."""

    model_config = ConfigDict(extra="forbid")


class ActionBody(BaseModel):
    """Why (required) and, optionally, who: recorded as ``operator:<actor>``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    actor: ActorName | None = Field(default=None, description="who acts, as stated by the caller (tokens carry only "
                                    "a role)")


class ErrorPublic(BaseModel):
    """An error: what went wrong and, where it helps, what to send instead."""

    detail: str

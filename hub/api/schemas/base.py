"""What every body of the hub API shares: `Public` (the base of responses) and `ErrorPublic`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Public(BaseModel):
    """Base of response bodies: documented fields only."""

    model_config = ConfigDict(extra="forbid")


class ErrorPublic(BaseModel):
    """An error: what went wrong and, where it helps, what to send instead."""

    detail: str

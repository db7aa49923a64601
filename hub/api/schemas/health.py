"""Bodies of ``/health``."""

from __future__ import annotations

from typing import Literal

from hub.api.schemas.base import Public


class HealthPublic(Public):
    status: Literal["ok"]
    dev_mode: bool
    counts: dict[str, int]

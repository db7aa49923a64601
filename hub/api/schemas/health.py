"""Bodies of ``/health`` (the verdict is `hub.app.health.assess`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hub.api.schemas.base import Public


class HealthPublic(Public):
    status: Literal["ok", "degraded", "failed"] = Field(
        description="ok; degraded (200: the API answers, something named in `problems` does not work); failed "
        "(503: the store cannot be read)")
    problems: list[str] = Field(description="named degraded or failed states: store_unavailable, "
                                "broker_disconnected:<client>, job_failing:<job>, job_overdue:<job>")
    dev_mode: bool
    counts: dict[str, int] = Field(description="rows in the store (empty when it cannot be read)")
    store: dict[str, Any] = Field(description="status, error, counts")
    broker: dict[str, Any] = Field(description="status, then each MQTT client of the hub (ingest, commands): "
                                   "connected, since (when it last came up or went down), last_error")
    jobs: dict[str, Any] = Field(description="each periodic job: state (ok, failing, overdue), interval_s, runs, "
                                 "failures, consecutive_failures, last_run, last_success, last_error")

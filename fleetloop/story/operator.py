"""The story's operator: everything an operator decides goes through the hub's real HTTP API with a token.

Takes v1's drift reference from the fleet's healthy traffic, reads the retrain jobs and the registry (gate
numbers), starts rollouts, tries to roll out a rejected version
(and is refused), and watches rollouts. Unexpected answers raise `StoryError` with the status and detail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from shared.errors import FleetloopError

__all__ = ["Operator", "StoryError"]


class StoryError(FleetloopError):
    """The story could not go on: a step timed out or the hub answered what it should not have."""


class Operator:
    """An operator (``operator:<name>`` in the audit trail) at the hub API on `url`."""

    def __init__(self, url: str, token: str, *, name: str = "ana", timeout: float = 30.0) -> None:
        self.name = name
        self.client = httpx.Client(base_url=url, timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.client.close()

    def _json(self, response: httpx.Response, *expected: int) -> Any:
        if response.status_code not in expected:
            raise StoryError(f"{response.request.method} {response.request.url.path} answered "
                             f"{response.status_code}: {response.text[:500]}")
        return response.json()

    def take_reference(self, version: str, start: float, end: float, *, reason: str) -> dict[str, Any]:
        """``POST /drift/reference``: `version`'s drift reference from the fleet's stats in ``[start, end)``, with
        each device's and cohort's own baseline (one machine's calibration is not drift); audited by the hub."""
        body = {"version": version, "start": start, "end": end, "reason": reason, "device_baselines": True,
                "actor": self.name}
        return dict(self._json(self.client.post("/drift/reference", json=body), 201))

    def jobs(self, limit: int = 10) -> list[dict[str, Any]]:
        """Recent training jobs, newest first (``GET /retrain``)."""
        return list(self._json(self.client.get("/retrain", params={"limit": limit}), 200))

    def retrain(self, reason: str) -> dict[str, Any]:
        """``POST /retrain``: a manual retrain on the current labels, queued (202 or 201); StoryError otherwise."""
        return dict(self._json(self.client.post("/retrain", json={"reason": reason, "actor": self.name}), 200, 201,
                               202))

    def model(self, version: str) -> dict[str, Any]:
        """One registered version with its gate decision and audit trail (``GET /models/{version}``)."""
        return dict(self._json(self.client.get(f"/models/{version}"), 200))

    def start_rollout(self, candidate: str, *, reason: str, canary: float | Sequence[str],
                      policies: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
        """``POST /rollouts``: the rollout as started (201); StoryError for any refusal."""
        body: dict[str, Any] = {"candidate": candidate, "reason": reason, "actor": self.name,
                                "canary": canary if isinstance(canary, float) else list(canary)}
        if policies:
            body["policies"] = {k: dict(v) for k, v in policies.items()}
        return dict(self._json(self.client.post("/rollouts", json=body), 201))

    def try_rollout(self, candidate: str, *, reason: str, canary: float | Sequence[str]) -> httpx.Response:
        """``POST /rollouts`` whatever it answers (the story expects a refusal for a rejected version)."""
        body = {"candidate": candidate, "reason": reason, "actor": self.name,
                "canary": canary if isinstance(canary, float) else list(canary)}
        return self.client.post("/rollouts", json=body)

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        """One rollout: stage, status, history (``GET /rollouts/{id}``)."""
        return dict(self._json(self.client.get(f"/rollouts/{rollout_id}"), 200))

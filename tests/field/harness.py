"""A production-mode fleet on loopback, as a plant runs it: the attacks and faults of tests/field run against this.

`FieldFleet` is `fleetloop.devfleet.DevFleet` (what ``fleetloop dev up`` runs: the ACL broker, ``fleetloop hub
serve`` not in dev mode with a provisioned signing key and tokens per role, agents with the hub's key pinned) with
the test's choices: a random share group and ingest client id, fast simulated lives, and two readers for tests —
`hub_cli` (a ``fleetloop hub …`` command against this hub) and `store` (the hub's database, opened beside it).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from typing import Any

from fleetloop.devfleet import ROLES, DevFleet, fleetloop
from hub.store.sqlite import SqliteHubStore
from tests.agent.helpers import FAST_LIVES

__all__ = ["ROLES", "FieldFleet", "fleetloop"]


@dataclass
class FieldFleet(DevFleet):
    """One production-mode fleet under `root`: start the hub and agents, talk to the API, read the hub store."""

    share_group: str | None = field(default_factory=lambda: f"hub-{secrets.token_hex(4)}")
    source: dict[str, Any] = field(default_factory=lambda: {"kind": "sim", "rate": 200, "sim_config": FAST_LIVES})

    def hub_env(self, **extra: str) -> dict[str, str]:
        return {"FLEETLOOP_HUB_INGEST_CLIENT_ID": f"{self.share_group or 'hub'}-ingest", **super().hub_env(**extra)}

    def hub_cli(self, *args: str, role: str = "operator", check: bool = True,
                **env: str) -> subprocess.CompletedProcess[str]:
        """One ``fleetloop hub …`` operator command against the running hub's API, with the token of `role`."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
        env = {**clean, "FLEETLOOP_HUB_URL": self.url, "FLEETLOOP_HUB_TOKEN": self.tokens[role], **env}
        out = subprocess.run(fleetloop("hub", *args), env=env, capture_output=True, text=True, timeout=120,
                             check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out

    def store(self) -> SqliteHubStore:
        """The hub's store, opened beside the running hub (WAL lets a reader in); close it when done."""
        return SqliteHubStore(self.hub_dir / "hub.db")


"""The hub's HTTP API (FastAPI): technicians annotate, operators validate labels, everyone reads.

- `app`: `create_app(services)` over a `hub.app.wiring.Services`, the only way to build it (no import-time globals).
- `deps`: the typed `ServicesDep` and aliases for its parts (`StoreDep`, `RegistryDep`, …), bearer-token roles
  (`require`, `Operator`, …).
- `schemas`: request (`XCreate`) and response (`XPublic`) bodies, one module per resource.
- `routes`: one module per resource.
"""

from hub.api.app import create_app

__all__ = ["create_app"]

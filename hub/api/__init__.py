"""The hub's HTTP API (FastAPI): technicians annotate, operators validate labels, everyone reads.

- `app`: `create_app(settings, store)`, the only way to build it (no import-time globals).
- `deps`: typed dependency aliases (`StoreDep`, …) and bearer-token roles (`require`, `Operator`, …).
- `schemas`: request (`XCreate`) and response (`XPublic`) bodies.
- `routes`: one module per resource.
"""

from hub.api.app import create_app

__all__ = ["create_app"]

"""The architecture, enforced: the dependency order of the packages and the core/shell rule of the hub's domains.

Walks every import statement of the product's source (including imports inside functions) with `ast`, so a
lazy import cannot hide a dependency. A failure names the offending module, line and import. See
docs/architecture.md for the rules and why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, frozenset[str]] = {
    # shared <- infra <- agent, sim <- models <- hub <- fleetloop (agent may use the simulator as a source)
    "shared": frozenset(),
    "infra": frozenset({"shared"}),
    "sim": frozenset({"shared", "infra"}),
    "agent": frozenset({"shared", "infra", "sim"}),
    "models": frozenset({"shared", "infra", "sim"}),
    "hub": frozenset({"shared", "infra", "sim", "models"}),
    "fleetloop": frozenset({"shared", "infra", "sim", "agent", "models", "hub"}),
}
FIRST_PARTY = frozenset(ALLOWED)

DOMAINS = ("labels", "drift", "training", "gate", "registry", "rollout", "delivery", "incidents")
"""Hub domain packages: pure modules beside one `service.py` (or `service/` package), the only I/O shell."""

SHELL_ONLY = ("hub.store", "hub.mqtt", "hub.api", "hub.console", "hub.app", "paho", "fastapi", "starlette", "sqlite3",
              "sqlite_utils")
"""What only a domain's shell may import. The store's frozen row types are plain data, open to pure modules."""

SHELL_ONLY_EXCEPT = ("hub.store.rows",)

AGENT_FORBIDDEN = ("sklearn", "scipy", "fastapi", "starlette", "skl2onnx", "sqlite_utils", "pydantic",
                   "pydantic_settings")
AGENT_PATH = ("agent", "infra", "shared", "sim")
"""The packages a gateway imports: the agent and what it may import (ALLOWED["agent"])."""

@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted (absolute)
    names: tuple[str, ...]  # names taken from it by `from … import`

    def __str__(self) -> str:
        what = f"from {self.target} import {', '.join(self.names)}" if self.names else f"import {self.target}"
        return f"{self.module}:{self.line}: {what}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path, packages: frozenset[str] = FIRST_PARTY) -> Iterator[Import]:
    """Every import statement in the given top-level packages under `root`, relative ones made absolute."""
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            is_package = path.name == "__init__.py"
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield Import(module, node.lineno, alias.name, ())
                elif isinstance(node, ast.ImportFrom):
                    target = node.module or ""
                    if node.level:
                        base = module.split(".")
                        base = base if is_package else base[:-1]
                        base = base[: len(base) - (node.level - 1)]
                        target = ".".join([*base, target] if target else base)
                    yield Import(module, node.lineno, target, tuple(a.name for a in node.names))


def _top(name: str) -> str:
    return name.split(".")[0]


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_violations(found: list[Import]) -> list[str]:
    """Imports of a first-party package that the dependency order does not allow."""
    bad = []
    for imp in found:
        src, dst = _top(imp.module), _top(imp.target)
        if dst in FIRST_PARTY and dst != src and dst not in ALLOWED[src]:
            bad.append(f"{imp}  ({src} may import only: {', '.join(sorted(ALLOWED[src])) or 'nothing first-party'})")
    return bad


def is_shell(module: str) -> bool:
    """Whether `module` is a hub domain's I/O shell: ``hub.<domain>.service`` or anything under it."""
    parts = module.split(".")
    return len(parts) >= 3 and parts[0] == "hub" and parts[1] in DOMAINS and parts[2] == "service"


def core_violations(found: list[Import]) -> list[str]:
    """Imports of the store, the broker or the web framework by a pure module of a hub domain package."""
    bad = []
    for imp in found:
        parts = imp.module.split(".")
        if len(parts) < 2 or parts[0] != "hub" or parts[1] not in DOMAINS or is_shell(imp.module):
            continue
        if _under(imp.target, SHELL_ONLY) and not _under(imp.target, SHELL_ONLY_EXCEPT):
            bad.append(f"{imp}  (only hub.{parts[1]}.service may touch the store, the broker or the web)")
    return bad


def private_violations(found: list[Import]) -> list[str]:
    """Private names (``_x``) taken from another first-party module."""
    return [
        f"{imp}  (private name used outside its module)"
        for imp in found
        if _top(imp.target) in FIRST_PARTY and imp.target != imp.module
        and any(n.startswith("_") and not n.startswith("__") for n in imp.names)
    ]


def agent_violations(found: list[Import]) -> list[str]:
    """Heavy libraries the gateway agent must never import, even lazily, nor anything it imports."""
    return [f"{imp}  (the agent stays light)" for imp in found
            if _top(imp.module) in AGENT_PATH and _under(imp.target, AGENT_FORBIDDEN)]


def check(root: Path) -> list[str]:
    found = list(imports(root))
    return layer_violations(found) + core_violations(found) + private_violations(found) + agent_violations(found)


def test_the_source_follows_the_architecture() -> None:
    problems = check(ROOT)
    assert not problems, "imports against the architecture (docs/architecture.md):\n" + "\n".join(problems)


def test_every_package_is_checked() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert on_disk == set(ALLOWED), "a top-level package without a place in the dependency order"


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name in FIRST_PARTY:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_the_checker_names_each_kind_of_planted_violation(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "agent/runtime.py": "def f():\n    from hub.app.settings import HubSettings\n",
        "hub/rollout/plan.py": "import paho.mqtt.client\nfrom hub.store.ports import HubStore\n",
        "hub/rollout/machine.py": "from hub.store.rows import RolloutRow\nfrom .plan import _private\n",
        "hub/rollout/service.py": "from hub.store.ports import HubStore\nimport paho.mqtt.client\n",
        "agent/pipeline/stats.py": "import scipy.stats\n",
        "agent/db.py": "def f():\n    import sqlite_utils\n",
        "infra/config.py": "from pydantic_settings import BaseSettings\n",
        "sim/machine.py": "from agent.link import Link\n",
        "shared/codec.py": "import infra\n",
        "shared/messages.py": "from pydantic import BaseModel\n",
        "agent/settings.py": "from pydantic import BaseModel\n",
    })
    problems = check(root)
    assert problems == [
        "agent.runtime:2: from hub.app.settings import HubSettings  (agent may import only: infra, shared, sim)",
        "shared.codec:1: import infra  (shared may import only: nothing first-party)",
        "sim.machine:1: from agent.link import Link  (sim may import only: infra, shared)",
        "hub.rollout.plan:1: import paho.mqtt.client  (only hub.rollout.service may touch the store, the broker or "
        "the web)",
        "hub.rollout.plan:2: from hub.store.ports import HubStore  (only hub.rollout.service may touch the store, "
        "the broker or the web)",
        "hub.rollout.machine:2: from hub.rollout.plan import _private  (private name used outside its module)",
        "agent.db:2: import sqlite_utils  (the agent stays light)",
        "agent.pipeline.stats:1: import scipy.stats  (the agent stays light)",
        "agent.settings:1: from pydantic import BaseModel  (the agent stays light)",
        "infra.config:1: from pydantic_settings import BaseSettings  (the agent stays light)",
        "shared.messages:1: from pydantic import BaseModel  (the agent stays light)",
    ]


def test_a_shell_package_may_touch_the_store(tmp_path: Path) -> None:
    root = _plant(tmp_path, {"hub/training/service/worker.py": "from hub.store.ports import TrainingStore\n"})
    assert check(root) == []

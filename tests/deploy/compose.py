"""Reading docker-compose.yml and the Dockerfile the way Docker Compose would, for tests without an engine.

`load()` interpolates ``${VAR:-default}`` like ``docker compose config`` and drops the ``x-`` extension
fields; `Mount` parses the short volume syntax; `FakeHost` turns every named volume into a temporary
directory and gives each service a root directory whose mount targets are symlinks to their sources, so a
service's real command can run here with its container paths translated.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, and $$ (a literal $)
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(Exception):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with every string interpolated as Compose does (keys are left alone)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        unset = name not in env or (op is not None and op.startswith(":") and not env[name])
        if not unset:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise InterpolationError(f"{name}: {arg or 'required'}")
        raise InterpolationError(f"${name} has no default: compose would substitute an empty string")

    return _VARIABLE.sub(one, value)


def variables(value: Any) -> set[str]:
    """The names of the variables a (raw) compose document interpolates."""
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value)) if value else set()
    if not isinstance(value, str):
        return set()
    return {m["name"] or m["bare"] for m in _VARIABLE.finditer(value) if not m["escaped"]}


def raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def load(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose model: interpolated with `env` (defaults otherwise), extension fields removed."""
    data = interpolate(raw(), env or {})
    return {k: v for k, v in data.items() if not k.startswith("x-")}


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def named(self) -> bool:
        return not self.source.startswith((".", "/", "~"))

    @classmethod
    def parse(cls, spec: str) -> Mount:
        parts = spec.split(":")
        assert len(parts) in (2, 3), f"volume {spec!r} is not SOURCE:TARGET[:MODE]"
        mode = parts[2] if len(parts) == 3 else "rw"
        assert mode in ("ro", "rw"), f"volume {spec!r}: mode {mode!r}"
        assert parts[1].startswith("/"), f"volume {spec!r}: the target must be absolute"
        return cls(parts[0], parts[1].rstrip("/"), mode == "ro")


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    return [Mount.parse(v) for v in service.get("volumes", [])]


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    assert isinstance(cmd, list), "commands are written in exec form (a list), never a shell string"
    return [str(word) for word in cmd]


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its text (from its FROM line up to the next)."""
    stages: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=FROM )", DOCKERFILE.read_text()):
        match = re.match(r"FROM \S+ AS (\S+)", block)
        if match:
            stages[match[1]] = block
    return stages


def dockerfile_instructions(stage: str, keyword: str) -> list[str]:
    """The arguments of `keyword` instructions in a stage (line continuations joined)."""
    text = dockerfile_stages()[stage].replace("\\\n", " ")
    return [line.split(None, 1)[1].strip() for line in text.splitlines() if line.startswith(keyword + " ")]


def stage_chain(stage: str) -> list[str]:
    """`stage` and the stages it is built FROM, nearest first."""
    stages = dockerfile_stages()
    chain = [stage]
    while True:
        base = re.match(r"FROM (\S+) AS", stages[chain[-1]])
        if not base or base[1] not in stages:
            return chain
        chain.append(base[1])


class FakeHost:
    """Volumes as directories, and per service a root whose mount targets link to them (read-only is not enforced)."""

    def __init__(self, tmp: Path, model: Mapping[str, Any]) -> None:
        self.tmp = tmp
        self.model = model
        self.volumes = {name: tmp / "volumes" / name for name in model.get("volumes") or {}}
        for path in self.volumes.values():
            path.mkdir(parents=True)
        self._roots: dict[str, Path] = {}
        self.addresses: dict[str, str] = {}  # service name:port in compose → where its stand-in listens here

    def root(self, service: str) -> Path:
        if service not in self._roots:
            root = self.tmp / "fs" / service
            for mount in mounts(self.model["services"][service]):
                source = self.volumes[mount.source] if mount.named else (ROOT / mount.source).resolve()
                link = root / mount.target.lstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(source, target_is_directory=source.is_dir())
            self._roots[service] = root
        return self._roots[service]

    def covers(self, service: str, path: str) -> bool:
        """Whether container path `path` is a mount target, under one, or a directory holding one."""
        return any(path == m.target or path.startswith(m.target + "/") or m.target.startswith(path.rstrip("/") + "/")
                   for m in mounts(self.model["services"][service]))

    def path(self, service: str, container_path: str) -> Path:
        assert self.covers(service, container_path), f"{service}: {container_path} is on no volume or bind mount"
        return self.root(service) / container_path.lstrip("/")

    def translate(self, service: str, word: str) -> str:
        """A command word or env value: container paths become host paths, anything else is unchanged."""
        return str(self.path(service, word)) if word.startswith("/") and self.covers(service, word) else word

    def args(self, service: str) -> list[str]:
        return [self.translate(service, w) for w in command(self.model["services"][service])]

    def env(self, service: str) -> dict[str, str]:
        env = self.model["services"][service].get("environment") or {}
        return {k: self.translate(service, str(v)) for k, v in env.items()}

    def remove(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def absolute_paths(words: list[str]) -> Iterator[str]:
    """Words of a command or env that are container paths."""
    return (w for w in words if w.startswith("/"))

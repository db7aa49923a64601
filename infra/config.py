"""Reading settings files and turning validation errors into one clear ConfigError (agent and hub alike)."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import ConfigError

S = TypeVar("S", bound=BaseModel)


def read_settings_file(path: Path) -> dict[str, Any]:
    """The table in a TOML (or, by suffix, JSON) settings file; ConfigError if unreadable or malformed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"settings file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a table/object of settings")
    return data


def load_settings(cls: type[S], what: str, path: Path | None, overrides: dict[str, Any]) -> S:
    """`cls` from a settings file (if given), then env, then non-None `overrides`; every problem listed."""
    data: dict[str, Any] = read_settings_file(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        where = f" ({path})" if path else ""
        raise ConfigError(f"invalid {what} settings{where}:\n" + "\n".join(lines)) from None


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (plain-text MQTT is only acceptable there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

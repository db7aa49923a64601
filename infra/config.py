"""Reading settings files and the environment, and turning validation errors into one clear ConfigError.

The hub's settings are pydantic-settings models; the agent's are plain pydantic models (`EnvSettings`) whose
environment this module reads itself, with pydantic-settings' rules (prefix, nested delimiter, JSON for
structured fields, names case-insensitive, file values beating env values), because pydantic-settings alone
costs a gateway about 16 MB of resident memory at import.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import ConfigError

S = TypeVar("S", bound=BaseModel)


class EnvSettings(BaseModel):
    """A settings model that `load_settings` also reads from ``<ENV_PREFIX><field>`` environment variables.

    A nested field is ``<ENV_PREFIX><field><ENV_NESTED_DELIMITER><subfield>``; a structured value (a list, a
    table, a model) is JSON. Constructing the model directly reads no environment: only `load_settings` does.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)
    ENV_PREFIX: ClassVar[str] = ""
    ENV_NESTED_DELIMITER: ClassVar[str] = "__"


def env_values(cls: type[EnvSettings], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings `environ` (default: os.environ) gives `cls`, as a nested dict of raw values.

    Variables that name no top-level field are ignored (as pydantic-settings does); an unknown nested key is
    kept so the model refuses it. A structured value that is not valid JSON is kept as text: validation then
    lists it with the other problems.
    """
    environ = os.environ if environ is None else environ
    prefix, delimiter = cls.ENV_PREFIX.lower(), cls.ENV_NESTED_DELIMITER.lower()
    out: dict[str, Any] = {}
    for key, raw in sorted(environ.items()):  # sorted: a whole-table JSON value comes before its nested keys
        name = key.lower()
        if not name.startswith(prefix):
            continue
        path = name.removeprefix(prefix).split(delimiter) if delimiter else [name.removeprefix(prefix)]
        if path[0] not in cls.model_fields:
            continue
        target: dict[str, Any] = out
        model: type[BaseModel] | None = cls
        for part in path[:-1]:
            model = _submodel(model, part)
            nested = target.get(part)
            if not isinstance(nested, dict):
                nested = target[part] = {}
            target = nested
        value: Any = raw
        if _is_structured(model, path[-1]):
            with contextlib.suppress(ValueError):  # not JSON: validation lists it with the other problems
                value = json.loads(raw)
        if isinstance(value, dict) and isinstance(target.get(path[-1]), dict):
            value = _deep_merge(target[path[-1]], value)
        target[path[-1]] = value
    return out


def _submodel(model: type[BaseModel] | None, name: str) -> type[BaseModel] | None:
    """The model type of field `name` of `model` (None when it is not a model, e.g. a free-form table)."""
    if model is None or name not in model.model_fields:
        return None
    for candidate in _flatten(model.model_fields[name].annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_structured(model: type[BaseModel] | None, name: str) -> bool:
    """Whether field `name` of `model` takes a list, table or model, which the environment gives as JSON."""
    if model is None or name not in model.model_fields:
        return False
    for candidate in _flatten(model.model_fields[name].annotation):
        origin = get_origin(candidate) or candidate
        if origin in (list, tuple, set, frozenset, dict) or (
            isinstance(origin, type) and issubclass(origin, (BaseModel, Mapping))
        ):
            return True
    return False


def _flatten(annotation: Any) -> list[Any]:
    """The members of a union (``X | None``), or the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `top`, tables merged key by key (`top` wins)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) \
            else value
    return out


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
    """`cls` from a settings file (if given), then env, then non-None `overrides`; every problem listed at once.

    Precedence, highest first: `overrides`, the file, the environment, the defaults (tables merged key by key).

    Pydantic reports every bad field, but runs a model's cross-field checks (no password outside dev mode, …)
    only once all fields are valid. So when fields fail, the checks run again with those fields at their
    defaults (required ones at the model's ``STAND_INS``), and what they find is listed too: one run shows
    everything to fix.
    """
    data: dict[str, Any] = read_settings_file(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if issubclass(cls, EnvSettings):  # pydantic-settings models read their environment themselves
        data = _deep_merge(env_values(cls), data)
    try:
        return cls(**data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    lines = _lines(errors)
    failed = {str(err["loc"][0]) for err in errors if err["loc"]}
    if failed and not any(not err["loc"] for err in errors):
        lines += [line for line in _cross_field_lines(cls, data, failed) if line not in lines]
    where = f" ({path})" if path else ""
    raise ConfigError(f"invalid {what} settings{where}:\n" + "\n".join(lines)) from None


def _lines(errors: list[Any]) -> list[str]:
    """One line per problem; a cross-field check may report several problems, one per line of its message."""
    lines = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines += [f"  {where}: {part}" for part in msg.split("\n") if part.strip()]
    return lines


def _cross_field_lines(cls: type[S], data: dict[str, Any], failed: set[str]) -> list[str]:
    """The cross-field problems of `data` with the `failed` fields replaced by their defaults or stand-ins."""
    stand_ins: dict[str, Any] = dict(getattr(cls, "STAND_INS", {}))
    retry = {k: v for k, v in data.items() if k not in failed}
    for name in failed:
        field = cls.model_fields.get(name)
        if field is None:  # an unknown key: already listed
            continue
        if field.is_required():
            if name not in stand_ins:
                return []  # nothing to stand in for it: the checks cannot run
            retry[name] = stand_ins[name]
        else:
            retry[name] = field.get_default(call_default_factory=True)  # beats the env value that failed
    try:
        cls(**retry)
    except ValidationError as exc:
        return _lines([err for err in exc.errors(include_url=False) if not err["loc"]])
    return []


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (plain-text MQTT is only acceptable there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

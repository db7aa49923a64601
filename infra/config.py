"""Settings as msgspec structs, read from a settings file and the environment; every problem in one ConfigError.

The agent's settings are `EnvSettings` structs: `load_settings` reads ``<ENV_PREFIX><field>`` environment
variables with pydantic-settings' rules (prefix, nested delimiter, JSON for structured fields, names
case-insensitive, file values beating env values), and msgspec converts and checks each field (types,
``msgspec.Meta`` constraints), so a gateway imports neither pydantic nor pydantic-settings (about 30 MB of
resident memory). The hub's settings stay pydantic-settings models, loaded by `hub.app.loading`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import re
import tomllib
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

import msgspec

from shared.errors import ConfigError, FleetloopError
from shared.wire import field_types

S = TypeVar("S", bound="Settings")
Problem = tuple[tuple[str, ...], str]  # (field path, message); an empty path is a cross-field problem

_BOOL_WORDS = {"1": True, "on": True, "t": True, "true": True, "y": True, "yes": True,
               "0": False, "off": False, "f": False, "false": False, "n": False, "no": False}
_AT = re.compile(r"(.*) - at `\$(.*)`", re.S)


class Secret:
    """A string kept out of reprs and logs (a password); `get_secret_value` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SettingsProblems(ValueError):
    """Every problem found building a `Settings` struct, each with the path of its field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(_line(p) for p in problems))


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A settings struct: built from plain values (``"1884"``, ``"yes"``, a path as text, a table for a nested
    struct), each field converted to its type and checked against its constraints; every bad field, else every
    cross-field problem (`problems`), raised at once as `SettingsProblems`."""

    STAND_INS: ClassVar[dict[str, Any]] = {}
    """What stands in for a required field that failed, so the cross-field checks still run (`load_settings`)."""
    CHECKS: ClassVar[dict[str, Callable[[Any], object]]] = {}
    """Checks of single fields beyond their types (a device id's form): each raises on a bad value."""

    def __post_init__(self) -> None:
        found = _convert_fields(self)
        if not found:
            found = [((), problem) for problem in self.problems()]
        if found:
            raise SettingsProblems(found)

    def problems(self) -> list[str]:
        """What the fields, each valid, cannot do together (a subclass's cross-field rules)."""
        return []


class EnvSettings(Settings, kw_only=True):
    """Settings `load_settings` also reads from ``<ENV_PREFIX><field>`` environment variables.

    A nested field is ``<ENV_PREFIX><field><ENV_NESTED_DELIMITER><subfield>``; a structured value (a list, a
    table, a struct) is JSON. Constructing the struct directly reads no environment: only `load_settings` does.
    """

    ENV_PREFIX: ClassVar[str] = ""
    ENV_NESTED_DELIMITER: ClassVar[str] = "__"


def _convert_fields(obj: Settings) -> list[Problem]:
    """Convert each field of `obj` in place to its type; the problems of those that cannot be."""
    found: list[Problem] = []
    for name, annotation in field_types(type(obj)):
        try:
            value = _convert(getattr(obj, name), annotation)
            if name in obj.CHECKS:
                obj.CHECKS[name](value)
            setattr(obj, name, value)
        except SettingsProblems as exc:
            found += [((name, *path), msg) for path, msg in exc.problems]
        except msgspec.ValidationError as exc:
            match = _AT.fullmatch(str(exc))
            msg, at = match.groups() if match else (str(exc), "")
            found.append(((name + at,), msg))
        except (ValueError, FleetloopError) as exc:  # a CHECKS check: its message says what is wrong
            found.append(((name,), str(exc)))
    return found


def _convert(value: Any, annotation: Any) -> Any:
    sub = settings_type(annotation)
    if sub is not None and isinstance(value, Mapping):
        return build(sub, value)
    if isinstance(value, str) and bool in _flatten(annotation):
        value = _BOOL_WORDS.get(value.strip().lower(), value)
    return msgspec.convert(value, annotation, strict=False, dec_hook=_dec_hook)


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    if kind is Secret and isinstance(value, str | Secret):
        return value if isinstance(value, Secret) else Secret(value)
    raise ValueError(f"Expected `{kind.__name__}`, got `{type(value).__name__}`")


def build(cls: type[S], data: Mapping[str, Any]) -> S:
    """`cls` from a table of plain values; `SettingsProblems` lists unknown keys, missing and bad fields."""
    fields = dict(field_types(cls))
    found: list[Problem] = [((str(key),), "Extra inputs are not permitted") for key in data if key not in fields]
    missing = [name for name in fields if name not in data and _required(cls, name)]
    found += [((name,), "Field required") for name in missing]
    values = {k: v for k, v in data.items() if k in fields}
    if any(name not in cls.STAND_INS for name in missing):
        raise SettingsProblems(found)  # nothing to stand in for it: the struct cannot be built
    try:
        built = cls(**values, **{name: cls.STAND_INS[name] for name in missing})
    except SettingsProblems as exc:
        found += exc.problems
    if found:
        raise SettingsProblems(found)
    return built


def _required(cls: type[Settings], name: str) -> bool:
    return name in _required_fields(cls)


@functools.cache
def _required_fields(cls: type[Settings]) -> frozenset[str]:
    return frozenset(f.name for f in msgspec.structs.fields(cls) if f.required)


def settings_type(annotation: Any) -> type[Settings] | None:
    """The settings struct a field of type `annotation` holds (``X | None`` looked into), if any."""
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, Settings):
            return candidate
    return None


def env_values(cls: type[EnvSettings], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings `environ` (default: os.environ) gives `cls`, as a nested dict of raw values.

    Variables that name no top-level field are ignored (as pydantic-settings does); an unknown nested key is
    kept so the struct refuses it. A structured value that is not valid JSON is kept as text: validation then
    lists it with the other problems.
    """
    environ = os.environ if environ is None else environ
    prefix, delimiter = cls.ENV_PREFIX.lower(), cls.ENV_NESTED_DELIMITER.lower()
    top = dict(field_types(cls))
    out: dict[str, Any] = {}
    for key, raw in sorted(environ.items()):  # sorted: a whole-table JSON value comes before its nested keys
        name = key.lower()
        if not name.startswith(prefix):
            continue
        path = name.removeprefix(prefix).split(delimiter) if delimiter else [name.removeprefix(prefix)]
        if path[0] not in top:
            continue
        target: dict[str, Any] = out
        model: type[Settings] | None = cls
        for part in path[:-1]:
            model = settings_type(_field_type(model, part))
            nested = target.get(part)
            if not isinstance(nested, dict):
                nested = target[part] = {}
            target = nested
        value: Any = raw
        if _is_structured(_field_type(model, path[-1])):
            with contextlib.suppress(ValueError):  # not JSON: validation lists it with the other problems
                value = json.loads(raw)
        if isinstance(value, dict) and isinstance(target.get(path[-1]), dict):
            value = _deep_merge(target[path[-1]], value)
        target[path[-1]] = value
    return out


def _field_type(model: type[Settings] | None, name: str) -> Any:
    """The type of field `name` of `model` (None when there is no such field)."""
    return None if model is None else dict(field_types(model)).get(name)


def _is_structured(annotation: Any) -> bool:
    """Whether a field of type `annotation` takes a list, table or struct, which the environment gives as JSON."""
    for candidate in _flatten(annotation):
        origin = get_origin(candidate) or candidate
        if origin in (list, tuple, set, frozenset, dict) or (
            isinstance(origin, type) and issubclass(origin, (msgspec.Struct, Mapping))
        ):
            return True
    return False


def _flatten(annotation: Any) -> list[Any]:
    """The members of a union (``X | None``), or the annotation itself, ``Annotated`` constraints looked through."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [b for a in get_args(annotation) if a is not type(None) for b in _flatten(a)]
    if hasattr(annotation, "__metadata__"):  # Annotated[X, Meta(...)]
        return _flatten(annotation.__origin__)
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

    A struct's cross-field checks (no password outside dev mode, …) run only once every field is valid. So when
    fields fail, the checks run again with those fields at their defaults (required ones at the struct's
    ``STAND_INS``), and what they find is listed too: one run shows everything to fix.
    """
    data: dict[str, Any] = read_settings_file(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if issubclass(cls, EnvSettings):
        data = _deep_merge(env_values(cls), data)
    try:
        return build(cls, data)
    except SettingsProblems as exc:
        found = exc.problems
    failed = {path[0] for path, _ in found if path}
    if failed and all(path for path, _ in found):
        found += [p for p in _cross_field_problems(cls, data, failed) if p not in found]
    where = f" ({path})" if path else ""
    lines = [f"  {line}" for p in found for line in _line(p).split("\n")]
    raise ConfigError(f"invalid {what} settings{where}:\n" + "\n".join(lines)) from None


def _cross_field_problems(cls: type[S], data: dict[str, Any], failed: set[str]) -> list[Problem]:
    """The cross-field problems of `data` with the `failed` fields at their defaults or stand-ins."""
    fields = dict(field_types(cls))
    retry = {k: v for k, v in data.items() if k not in failed}
    for name in failed:
        base = re.split(r"[\[.]", name, maxsplit=1)[0]  # a field, or a place inside one (``drifts[0]``)
        retry.pop(base, None)  # back to its default, beating the value that failed
        if base in fields and _required(cls, base):
            if base not in cls.STAND_INS:
                return []  # nothing to stand in for it: the checks cannot run
            retry[base] = cls.STAND_INS[base]
    try:
        build(cls, retry)
    except SettingsProblems as exc:
        return [p for p in exc.problems if not p[0]]
    return []


def _line(problem: Problem) -> str:
    path, msg = problem
    where = ".".join(path).replace(".[", "[") or "settings"
    return "\n".join(f"{where}: {part}" for part in msg.split("\n") if part.strip())


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (plain-text MQTT is only acceptable there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

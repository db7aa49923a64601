"""Loading the hub's pydantic-settings models: a settings file, then the environment (pydantic-settings reads it),
then overrides, with every problem listed in one ConfigError. (The agent's settings are msgspec structs loaded by
`infra.config.load_settings`, so a gateway never imports pydantic.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from infra.config import read_settings_file
from shared.errors import ConfigError

S = TypeVar("S", bound=BaseModel)


def load_settings(cls: type[S], what: str, path: Path | None, overrides: dict[str, Any]) -> S:
    """`cls` from a settings file (if given), then env, then non-None `overrides`; every problem listed at once.

    Precedence, highest first: `overrides`, the file, the environment, the defaults.

    Pydantic reports every bad field, but runs a model's cross-field checks (no password outside dev mode, …)
    only once all fields are valid. So when fields fail, the checks run again with those fields at their
    defaults (required ones at the model's ``STAND_INS``), and what they find is listed too: one run shows
    everything to fix.
    """
    data: dict[str, Any] = read_settings_file(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
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

"""The base of the wire types (messages, manifests, window specs): msgspec Structs, and helpers on them.

A `Wire` struct is immutable, keyword-only and refuses unknown fields when decoded. msgspec checks field types
and constraints when it decodes or converts data; constructing a struct in code checks only what its
``__post_init__`` checks (cross-field rules, finite numbers), which decoding runs too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


class Wire(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The base of every wire type: immutable, keyword-only, unknown fields refused."""


def replace(struct: S, **changes: Any) -> S:
    """A copy of `struct` with `changes` (pydantic's ``model_copy(update=…)``); ``__post_init__`` runs again."""
    return msgspec.structs.replace(struct, **changes)


def to_dict(struct: msgspec.Struct) -> dict[str, Any]:
    """`struct` as JSON-ready plain data (nested structs as dicts, tuples as lists)."""
    data: dict[str, Any] = msgspec.to_builtins(struct)
    return data


def to_json_data(struct: msgspec.Struct) -> dict[str, Any]:
    """`struct` as the plain data its JSON decodes to (tuples as lists): pydantic's ``model_dump(mode="json")``."""
    data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(struct))
    return data


def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
    """`data` (plain, JSON-like) validated as `cls`; msgspec.ValidationError names the first bad field."""
    return msgspec.convert(data, cls)


def finite(values: Iterable[float | None], what: str) -> None:
    """Raise ValueError unless every value that is not None is a finite number (no NaN, no infinity).

    Runs on every message decoded (feature vectors included), so it first tries one C-level sum: a NaN or an
    infinity makes it non-finite or raise; only a sum that fails that way (or a None) is checked value by value.

    >>> finite([1.0, 2.5e300, -1e308, -1e308], "x")
    >>> finite((1.0, None), "x")
    >>> finite([1.0, float("nan")], "features")
    Traceback (most recent call last):
    ValueError: features must be finite numbers
    """
    if not isinstance(values, list | tuple):
        values = tuple(values)
    try:
        if math.isfinite(math.fsum(values)):  # type: ignore[arg-type]
            return
    except (TypeError, ValueError, OverflowError):  # a None; inf + -inf; a finite sum beyond float's range
        pass
    if not all(v is None or math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers")


@functools.cache
def field_types(cls: type[msgspec.Struct]) -> tuple[tuple[str, Any], ...]:
    """(name, type) of each field of `cls`, annotations resolved (``Annotated`` constraints kept)."""
    return tuple((f.name, f.type) for f in msgspec.structs.fields(cls))


def check_fields(struct: msgspec.Struct, dec_hook: Callable[[type, Any], Any] | None = None) -> None:
    """Check every field of `struct` against its type and constraints, as decoding does; for ``__post_init__``, so
    a struct built in code is checked too. A value given loosely (a list for a tuple) is stored as its type;
    ValueError names the first bad field."""
    for name, annotation in field_types(type(struct)):
        value = getattr(struct, name)
        try:
            converted = msgspec.convert(value, annotation, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if converted is not value:
            msgspec.structs.force_setattr(struct, name, converted)

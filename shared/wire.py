"""The base of the wire types (messages, manifests, window specs): msgspec Structs, and helpers on them.

A `Wire` struct is immutable, keyword-only and refuses unknown fields when decoded. msgspec checks field types
and constraints when it decodes or converts data; constructing a struct in code checks only what its
``__post_init__`` checks (cross-field rules, finite numbers), which decoding runs too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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


def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
    """`data` (plain, JSON-like) validated as `cls`; msgspec.ValidationError names the first bad field."""
    return msgspec.convert(data, cls)


def finite(values: Iterable[float | None], what: str) -> None:
    """Raise ValueError unless every value that is not None is a finite number (no NaN, no infinity)."""
    if not all(v is None or math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers")

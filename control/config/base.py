"""The one strict base of every config section, and the markers that say what a string names.

A field typed `BackendName` names a backend, `TaskLabel`/`DomainLabel` a model label and
`AnyLabel` either. `named(config, marker)` finds every such value wherever it sits (fields,
lists, mapping keys and values), so a new section is checked against the backends and the
model's labels without a list of references to keep up to date.
"""
from __future__ import annotations

import types
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Marker:
    def __init__(self, what: str):
        self.what = what

    def __repr__(self) -> str:
        return self.what


BACKEND, TASK, DOMAIN, LABEL = Marker("backend"), Marker("task label"), Marker("domain label"), Marker("label")
BackendName = Annotated[str, BACKEND]
TaskLabel = Annotated[str, TASK]
DomainLabel = Annotated[str, DOMAIN]
AnyLabel = Annotated[str, LABEL]


def repeated(names: list[str], what: str) -> None:
    """Refuse names given twice (ValueError naming them)."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")


def named(model: BaseModel, marker: Marker, where: str = "") -> list[tuple[str, str]]:
    """(where, value) for every string marked `marker` in `model`, e.g. ("routing.tasks.coding", "coder")."""
    found = []
    for name, info in type(model).model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        found += _walk(getattr(model, name), annotation, f"{where}.{name}" if where else name, marker)
    return found


def _walk(value, annotation, path: str, marker: Marker) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, BaseModel):
        return named(value, marker, path)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return [(path, value)] if marker in args[1:] and isinstance(value, str) else _walk(value, args[0], path, marker)
    if origin in (Union, types.UnionType):
        fitting = next((a for a in args if _fits(value, a)), None)
        return _walk(value, fitting, path, marker) if fitting is not None else []
    if origin in (list, tuple) and args:
        return [ref for item in value for ref in _walk(item, args[0], _item_path(path, item), marker)]
    if origin is dict and args:
        keys = [(f"{path}.{key}", key) for key in value if _marks(args[0], marker)]
        return keys + [ref for key, item in value.items() for ref in _walk(item, args[1], f"{path}.{key}", marker)]
    return []


def _fits(value, annotation) -> bool:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    base = get_origin(annotation) or annotation
    return isinstance(base, type) and isinstance(value, base)


def _marks(annotation, marker: Marker) -> bool:
    return get_origin(annotation) is Annotated and marker in get_args(annotation)[1:]


def _item_path(path: str, item) -> str:
    """A list of named sections reads as rules.<name>; a list of names keeps the list's path."""
    return f"{path}.{item.name}" if isinstance(item, BaseModel) and hasattr(item, "name") else path

"""Pydantic's errors in the words an operator reads: where in the file, what is wrong,
and for an unknown key the one probably meant."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def place(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _known_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the file may hold at `loc` (the mapping an unknown key was found in)."""
    node: Any = root
    for part in loc:
        node = _optional(node)
        if get_origin(node) is dict:      # `part` is a free name (an intent, a model)
            node = get_args(node)[-1]
        elif get_origin(node) in (list, tuple):
            node = get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, BaseModel):
            fld = next((f for n, f in node.model_fields.items() if (f.alias or n) == part),
                       None)
            node = fld.annotation if fld is not None else None
        else:
            return []
    node = _optional(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items() if n != "name"]
    return []


def _optional(node: Any) -> Any:
    """`X | None` as X."""
    args = [a for a in get_args(node) if a is not type(None)]
    return args[0] if get_origin(node) in (Union, UnionType) and len(args) == 1 else node


def plain(root: type[BaseModel], err: Mapping[str, Any]) -> str:
    """One pydantic error in the words an operator reads."""
    loc = tuple(err["loc"])
    where, kind, value = place(loc), err["type"], err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(root, loc[:-1])
        what = "unknown setting" if len(loc) > 1 else "unknown section"
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
        return f"{where}: {what} ({hint})"
    if kind in ("bool_type", "bool_parsing"):
        quoted = isinstance(value, str) and value.lower() in ("true", "false")
        return f"{where}: must be true or false{' (unquoted)' if quoted else ''}, got {value!r}"
    if kind in ("int_type", "float_type", "int_parsing", "float_parsing", "int_from_float"):
        whole = " whole" if kind in ("int_type", "int_from_float") and \
            isinstance(value, float) else ""
        return f"{where}: must be a{whole} number, got {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"greater_than": "greater than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}[kind]
        bound = next(iter(err.get("ctx", {}).values()), "")
        return f"{where}: must be {words} {bound}, got {value!r}"
    if kind == "missing":
        return f"{where}: is required"
    if kind == "too_short":
        return f"{where}: must be a non-empty list"
    if kind in ("string_type",):
        return f"{where}: must be text, got {value!r}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where}: must be a mapping, got {type(value).__name__}"
    if kind in ("list_type", "tuple_type"):
        return f"{where}: must be a list, got {value!r}"
    if kind == "literal_error":
        choices = err.get("ctx", {}).get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{where}: must be one of {choices}, got {value!r}"
    if kind in ("date_from_datetime_parsing", "date_parsing", "date_type"):
        return f"{where}: {value!r} is not a date like 2026-11-01"
    if kind == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
        if msg.startswith("patterns: "):   # a nested list's problem, named where it is
            return f"{where}.{msg}"
        return f"{where}: {msg}"
    return f"{where}: {err['msg']}"


def order(root: type[BaseModel], problem: str) -> tuple[int, str]:
    """Problems in the order of the file's sections."""
    head = re.split(r"[.:\[ ]", problem, maxsplit=1)[0]
    names = list(root.model_fields)
    aliases = [f.alias or n for n, f in root.model_fields.items()]
    for i, (n, a) in enumerate(zip(names, aliases, strict=True)):
        if head in (n, a):
            return i, problem
    return len(names), problem

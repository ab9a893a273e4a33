"""JSON encoding shared by the pipeline: one encoder, bytes in and out."""

from __future__ import annotations

import decimal
import functools
from collections.abc import Callable
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError
Fragment = orjson.Fragment


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


dumps: Callable[[Any], bytes] = functools.partial(orjson.dumps, default=_default)
"""Encode a value as compact JSON (UTF-8)."""


def dumps_text(value: Any, *, indent: bool = False) -> str:
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, default=_default, option=option).decode()


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)

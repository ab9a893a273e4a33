"""A handler's result as Lambda's Python runtime returns it: `json.dumps` semantics.

Lambda refuses (`Runtime.MarshalError`) what `json.dumps` cannot write: sets, bytes,
datetimes, arbitrary objects, circular structures. Decimals become numbers, as in the
runtime. NaN and Infinity would be written as the bare words `NaN` and `Infinity`,
which are not JSON: they are refused too. The pipeline's own encoder (bridge.codec) is
more lenient and is not used for results.
"""

from __future__ import annotations

import decimal
import json
from typing import Any


class MarshalError(ValueError):
    """The result cannot be a Lambda response; the message is the runtime's reason."""


def _decimal(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_decimal)


def encode_result(result: Any) -> bytes:
    """The response body for `result` (ASCII, as json.dumps writes it); raises
    MarshalError with the reason."""
    if result is None:  # what most handlers of a batch return
        return b"null"
    try:
        return _ENCODER.encode(result).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise MarshalError(str(exc)) from None

"""Types the REST bodies share: strict input models, device ids, labels, time zones."""

from __future__ import annotations

import json
import re
import zoneinfo
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from courier.ids import describe_bad_device_id, is_device_id


def _device_id(value: str) -> str:
    if not is_device_id(value):
        raise ValueError(describe_bad_device_id(value))
    return value


DeviceId = Annotated[str, AfterValidator(_device_id)]
LabelKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")]
Labels = Annotated[dict[LabelKey, Annotated[str, Field(max_length=256)]], Field(max_length=64)]


class StrictIn(BaseModel):
    """A request body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


def check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Paris)"
        ) from exc
    return value


MAX_DEPTH = 64
_LONG_DIGITS = 19  # 18 digits and fewer always fit in 64 bits
_LONG_NUMBER = re.compile(rb"\d{%d}" % _LONG_DIGITS)
_DIGITS = b"0123456789"
INT_RANGE = (-(2**63), 2**64 - 1)  # what the store's JSON encoder writes exactly


def json_depth(value: Any) -> tuple[int, bool]:
    """How deeply arrays and objects nest in a decoded JSON value (a scalar is 0), and
    whether it holds a float."""
    deepest, floats, stack = 0, False, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            floats = floats or isinstance(item, float)
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item)
    return deepest, floats


def _bounded_int(text: str) -> int:
    value = int(text)
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise json.JSONDecodeError(f"integer {text[:30]} is outside 64 bits", text, 0)
    return value


def strict_json(data: bytes | str) -> Any:
    """Decode JSON that Courier can keep exactly: UTF-8, no NaN or Infinity, no lone
    surrogates, integers within 64 bits, nesting within MAX_DEPTH. json.JSONDecodeError
    (orjson's is one) otherwise."""
    value = orjson.loads(data)
    raw = data.encode() if isinstance(data, str) else data
    if (len(raw) < 2 * (MAX_DEPTH + 1) or raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH) and (
        len(raw) - len(raw.translate(None, _DIGITS)) < _LONG_DIGITS
        or _LONG_NUMBER.search(raw) is None
    ):
        # Too short or too few brackets to nest too deep, and too few digits or no run of
        # them long enough to leave 64 bits: the walk below cannot find anything (most
        # payloads are like this; counting digits is a third of the pattern's cost).
        return value
    depth, floats = json_depth(value)
    if depth > MAX_DEPTH:
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)
    if floats:  # orjson reads an integer beyond 64 bits as a float: find it exactly
        json.loads(data, parse_int=_bounded_int)
    return value

"""Types the REST bodies share: strict input models, device ids, labels, time zones."""

from __future__ import annotations

import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from courier.ids import describe_bad_device_id, is_device_id


def _device_id(value: str) -> str:
    if not is_device_id(value):
        raise ValueError(describe_bad_device_id(value))
    return value


DeviceId = Annotated[str, AfterValidator(_device_id)]
Labels = Annotated[dict[str, Annotated[str, Field(max_length=256)]], Field(max_length=64)]


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

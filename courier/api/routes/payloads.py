"""Secure deferred payloads (Servitly, seeds/001): commands a device runs later, offline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from courier.api.auth import scope
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import device_path
from courier.core.catalogue import Definition, validate_args
from courier.core.deferred import build_payloads, decode_key
from courier.core.records import ApiKey
from courier.errors import InvalidInput
from courier.ids import NAME_PATTERN
from courier.schemas.common import StrictIn

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/tenants/{tenant}/devices", tags=["deferred payloads"]
)
DEFAULT_VALIDITY = 86400


class PayloadsIn(StrictIn):
    command: str = Field(pattern=NAME_PATTERN, description="a command of the catalogue")
    args: dict[str, Any] | None = Field(None, description="default: the definition's defaults")
    valid_from: datetime | None = Field(None, description="default: now")
    valid_until: datetime | None = Field(None, description="default: the command's ttl, or 24 h")


class PayloadsOut(BaseModel):
    payloads: list[str] = Field(
        description="one per authorization id: JSON strings, or Base64 AES-256-GCM ciphertexts "
        "for a secure command"
    )


def default_args(definition: Definition) -> dict[str, Any]:
    properties = definition.schema.get("properties", {})
    return {
        name: spec["default"]
        for name, spec in properties.items()
        if isinstance(spec, dict) and "default" in spec
    }


def _seconds(value: datetime | None, fallback: float, loc: str) -> int:
    if value is None:
        return int(fallback)
    if value.tzinfo is None:
        raise InvalidInput(f"{loc}: give a time zone (e.g. Z)")
    return int(value.timestamp())


@router.post("/{device_id}/payloads", response_model=PayloadsOut)
async def issue_payloads(
    tenant: str,
    device_id: str,
    body: PayloadsIn,
    request: Request,
    key: ApiKey = Depends(scope("execute")),
) -> PayloadsOut:
    """Payloads of `command` for this device, one per authorization id of the device (`page`
    0xXXYY); encrypted with the device's key when the command's definition is `secure`."""
    service = request.app.state.service
    service.require_scope(key, "read")
    device = await service.store.get_device(tenant, device_path(device_id))
    definition = await service.definition(tenant, body.command)
    if definition is None:
        raise InvalidInput(f"command: no definition {body.command}; payloads need one")
    args = {**default_args(definition), **(body.args or {})}
    validate_args(definition, args)
    now = service.clock.now()
    valid_from = _seconds(body.valid_from, now, "valid_from")
    validity = definition.ttl or DEFAULT_VALIDITY
    valid_until = _seconds(body.valid_until, valid_from + validity, "valid_until")
    payload_key = None
    if definition.secure:
        if device.payload_key is None:
            raise InvalidInput(f"{device_id} has no payload key; rotate one first")
        payload_key = decode_key(device.payload_key)
    payloads = build_payloads(
        body.command,
        args,
        device.authorization_ids,
        valid_from,
        valid_until,
        int(now),
        definition.secure,
        payload_key,
    )
    return PayloadsOut(payloads=payloads)

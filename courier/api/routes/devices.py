"""Device registry, a device's command history, and the polling inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from courier.api.auth import actor, scope
from courier.api.convert import device_out, execution_out, page_out
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import Limit, Offset, csv_states, device_path, timestamp
from courier.clock import isoformat
from courier.core.records import ApiKey
from courier.files.service import with_links
from courier.schemas.api import (
    Credentials,
    DeviceCreated,
    DeviceIn,
    DeviceOut,
    DevicePatch,
    ExecutionOut,
    PageOut,
    PayloadKey,
)
from courier.schemas.mqtt import CommandEnvelope
from courier.store import DeviceFilter, ExecutionFilter

router = APIRouter(route_class=JsonRoute, prefix="/v1/tenants/{tenant}/devices", tags=["devices"])


@router.post("", status_code=201, response_model=DeviceCreated)
async def register_device(
    tenant: str, body: DeviceIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> DeviceCreated:
    """Register a device. The answer carries its MQTT password and its deferred-payload key,
    shown only this once."""
    device, password, payload_key = await request.app.state.service.register_device(tenant, body)
    bridge = request.app.state.bridge
    if bridge is not None:
        await bridge.refresh_presence([device.id])
    credentials = None if password is None else Credentials(username=device.id, password=password)
    return DeviceCreated(
        **device_out(device).model_dump(), credentials=credentials, payload_key=payload_key
    )


@router.get("", response_model=PageOut[DeviceOut])
async def list_devices(
    tenant: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    online: bool | None = None,
    kind: str | None = None,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[DeviceOut]:
    page = await request.app.state.service.store.list_devices(
        tenant, DeviceFilter(online=online, kind=kind), limit, offset
    )
    return page_out(request, page, limit, offset, device_out)


@router.get("/{device_id}", response_model=DeviceOut)
async def get_device(
    tenant: str, device_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> DeviceOut:
    device = await request.app.state.service.store.get_device(tenant, device_path(device_id))
    return device_out(device)


@router.patch("/{device_id}", response_model=DeviceOut)
async def update_device(
    tenant: str,
    device_id: str,
    body: DevicePatch,
    request: Request,
    key: ApiKey = Depends(scope("admin")),
) -> DeviceOut:
    service = request.app.state.service
    fields: dict[str, Any] = body.model_dump(exclude_unset=True)
    if fields.get("authorization_ids") is not None:
        fields["authorization_ids"] = tuple(dict.fromkeys(fields["authorization_ids"]))
    device = await service.store.update_device(
        tenant, device_path(device_id), fields, service.clock.now()
    )
    return device_out(device)


@router.delete("/{device_id}", status_code=204)
async def delete_device(
    tenant: str, device_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    """Remove a device; its pending executions are cancelled (history stays) and, where
    Courier manages the broker's users, its MQTT session is cut off."""
    await request.app.state.service.delete_device(tenant, device_path(device_id), actor(key))
    return Response(status_code=204)


@router.post("/{device_id}/password", response_model=Credentials)
async def rotate_password(
    tenant: str, device_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Credentials:
    """A new MQTT password, shown only this once; the old one stops working at once and the
    device's current session is ended."""
    password = await request.app.state.service.rotate_password(tenant, device_path(device_id))
    return Credentials(username=device_id, password=password)


@router.post("/{device_id}/payload_key", response_model=PayloadKey)
async def rotate_payload_key(
    tenant: str, device_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> PayloadKey:
    """A new key for the device's secure deferred payloads, shown only this once."""
    service = request.app.state.service
    return PayloadKey(payload_key=await service.rotate_payload_key(tenant, device_path(device_id)))


@router.get("/{device_id}/executions", response_model=PageOut[ExecutionOut])
async def device_history(
    tenant: str,
    device_id: str,
    request: Request,
    state: Annotated[str | None, Query(description="comma-separated states")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[ExecutionOut]:
    """The device's command history, newest first."""
    store = request.app.state.service.store
    device = await store.get_device(tenant, device_path(device_id))
    flt = ExecutionFilter(
        device_ids=(device.id,),
        states=csv_states(state),
        since=timestamp(since),
        until=timestamp(until),
    )
    page = await store.list_executions(tenant, flt, limit, offset)
    return page_out(request, page, limit, offset, execution_out)


@router.get("/{device_id}/inbox", response_model=list[CommandEnvelope])
async def inbox(
    tenant: str, device_id: str, request: Request, key: ApiKey = Depends(scope("execute"))
) -> list[CommandEnvelope]:
    """Due commands for a device that polls over HTTP; they become SENT.

    Report back with PUT .../executions/{id}/state. A command not acknowledged within its
    ack timeout is handed out again with the next attempt number.
    """
    service = request.app.state.service
    dispatches = await service.inbox(tenant, device_path(device_id))
    links = await service.files.links(service.clock)
    now = service.clock.now()
    return [
        CommandEnvelope(
            id=d.execution.id,
            request=d.execution.request_id,
            command=d.execution.command,
            args=with_links(links, tenant, d.execution.id, d.execution.command, d.args, now),
            attempt=d.execution.attempt,
            issued_at=isoformat(d.request_created_at),
            expires_at=isoformat(d.execution.expires_at),
            timeout=d.execution.timeout,
        )
        for d in dispatches
    ]

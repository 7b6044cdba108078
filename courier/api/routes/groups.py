"""Groups of devices: create, rename, delete, and their members."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from courier.api.auth import scope
from courier.api.convert import device_out, group_out, page_out
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import Limit, Offset, device_path
from courier.core.records import ApiKey
from courier.schemas.api import DeviceOut, PageOut
from courier.schemas.fleet import GroupIn, GroupOut, GroupPatch

router = APIRouter(route_class=JsonRoute, prefix="/v1/tenants/{tenant}/groups", tags=["groups"])


@router.post("", status_code=201, response_model=GroupOut)
async def create_group(
    tenant: str, body: GroupIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> GroupOut:
    """A named group, optionally with its first members (every device must exist)."""
    service = request.app.state.service
    group = await service.store.create_group(
        tenant, body.name, body.devices, service.clock.now(), body.id
    )
    return group_out(group)


@router.get("", response_model=PageOut[GroupOut])
async def list_groups(
    tenant: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[GroupOut]:
    page = await request.app.state.service.store.list_groups(tenant, limit, offset)
    return page_out(request, page, limit, offset, group_out)


@router.get("/{group_id}", response_model=GroupOut)
async def get_group(
    tenant: str, group_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> GroupOut:
    return group_out(await request.app.state.service.store.get_group(tenant, group_id))


@router.patch("/{group_id}", response_model=GroupOut)
async def rename_group(
    tenant: str,
    group_id: str,
    body: GroupPatch,
    request: Request,
    key: ApiKey = Depends(scope("admin")),
) -> GroupOut:
    service = request.app.state.service
    group = await service.store.rename_group(tenant, group_id, body.name, service.clock.now())
    return group_out(group)


@router.delete("/{group_id}", status_code=204)
async def delete_group(
    tenant: str, group_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    """Delete a group; its devices stay registered."""
    await request.app.state.service.store.delete_group(tenant, group_id)
    return Response(status_code=204)


@router.get("/{group_id}/devices", response_model=PageOut[DeviceOut])
async def members(
    tenant: str,
    group_id: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[DeviceOut]:
    page = await request.app.state.service.store.group_members(tenant, group_id, limit, offset)
    return page_out(request, page, limit, offset, device_out)


@router.put("/{group_id}/devices/{device_id}", status_code=204)
async def add_member(
    tenant: str,
    group_id: str,
    device_id: str,
    request: Request,
    key: ApiKey = Depends(scope("admin")),
) -> Response:
    """Add a device to the group (adding it twice changes nothing)."""
    service = request.app.state.service
    await service.store.add_member(tenant, group_id, device_path(device_id), service.clock.now())
    return Response(status_code=204)


@router.delete("/{group_id}/devices/{device_id}", status_code=204)
async def remove_member(
    tenant: str,
    group_id: str,
    device_id: str,
    request: Request,
    key: ApiKey = Depends(scope("admin")),
) -> Response:
    await request.app.state.service.store.remove_member(tenant, group_id, device_path(device_id))
    return Response(status_code=204)

"""EdgeIQ's gateway commands (seeds/002): one command for a gateway, or fanned out to its
attached devices, with stored commands, settings and software updates by id."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from courier.api.auth import actor, scope
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import device_path
from courier.clock import isoformat
from courier.core.documents import StoredCommand
from courier.core.records import ApiKey
from courier.errors import InvalidInput, NotFound
from courier.schemas.api import ExecutionRef
from courier.schemas.edgeiq import GatewayCommandIn, GatewayCommandOut

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/tenants/{tenant}/devices", tags=["gateway commands (EdgeIQ)"]
)


@router.post(
    "/{device_id}/gateway_commands",
    response_model=GatewayCommandOut,
    response_model_by_alias=True,
)
async def execute_gateway_command(
    tenant: str,
    device_id: str,
    body: GatewayCommandIn,
    request: Request,
    key: ApiKey = Depends(scope("execute")),
) -> GatewayCommandOut:
    """Execute a gateway command on a device; with `attached_device_ids`, one execution per
    attached device, delivered through this gateway."""
    service = request.app.state.service
    store = service.store
    await store.get_device(tenant, device_path(device_id))
    targets = [device_id]
    if body.attached_device_ids:
        targets = list(dict.fromkeys(body.attached_device_ids))
        for attached in targets:
            try:
                found = await store.get_device(tenant, attached)
            except NotFound:
                found = None
            if found is None or found.gateway_id != device_id:
                raise InvalidInput(
                    f"attached_device_ids: {attached} is not attached to {device_id}"
                )
    stored = None
    if body.command_type == "command" and body.command_id is not None:
        try:
            stored = await store.get_document(StoredCommand, tenant, body.command_id)
        except NotFound:
            raise InvalidInput(f"command_id: no stored command {body.command_id}") from None
    created = await service.create_command(tenant, body.native(targets, stored), actor(key))
    return GatewayCommandOut(
        id=created.request.id,
        command_type=body.command_type,
        device_id=device_id,
        attached_device_ids=list(body.attached_device_ids),
        payload=body.payload,
        created_at=isoformat(created.request.created_at),
        executions=[
            ExecutionRef(id=e.id, device=e.device_id, state=e.state) for e in created.executions
        ],
    )

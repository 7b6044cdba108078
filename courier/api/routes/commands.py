"""Command requests: create (idempotent), list, get with per-state counts, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from courier.api.auth import actor, scope
from courier.api.convert import execution_out, page_out, request_out
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import CsvQuery, Limit, Offset, csv_devices, csv_states, timestamp
from courier.core.records import ApiKey, CommandRequest
from courier.errors import InvalidInput
from courier.schemas.api import CancelIn, CommandRequestIn, CommandRequestOut, ExecutionOut, PageOut
from courier.store import ExecutionFilter, RequestFilter

router = APIRouter(route_class=JsonRoute, prefix="/v1/tenants/{tenant}/commands", tags=["commands"])
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", description="the same key within 24 h returns the first request"
    ),
]


@router.post("", status_code=201, response_model=CommandRequestOut)
async def create_command(
    tenant: str,
    body: CommandRequestIn,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    key: ApiKey = Depends(scope("execute")),
) -> Response:
    """Create a command request; it is committed before the 201 answer."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters")
    created = await request.app.state.service.create_command(
        tenant, body, actor(key), idempotency_key
    )
    # Serialized here: the busiest route skips FastAPI's second validation of its answer.
    answer = request_out(created.request, created.executions).model_dump_json()
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return Response(answer, status_code=201, media_type="application/json", headers=headers)


@router.get("", response_model=PageOut[CommandRequestOut])
async def list_commands(
    tenant: str,
    request: Request,
    command: str | None = None,
    command_type: str | None = None,
    device_type: str | None = None,
    issued_by: str | None = None,
    devices: CsvQuery = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[CommandRequestOut]:
    """Command requests, newest first."""
    flt = RequestFilter(
        command=command,
        command_type=command_type,
        device_type=device_type,
        issued_by=issued_by,
        device_ids=csv_devices(devices),
        since=timestamp(since),
        until=timestamp(until),
    )
    page = await request.app.state.service.store.list_requests(tenant, flt, limit, offset)

    def convert(r: CommandRequest) -> CommandRequestOut:
        return request_out(r)

    return page_out(request, page, limit, offset, convert)


@router.get("/{request_id}", response_model=CommandRequestOut)
async def get_command(
    tenant: str, request_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> CommandRequestOut:
    """One request with the count of its executions in each state."""
    store = request.app.state.service.store
    found = await store.get_request(tenant, request_id)
    counts = await store.request_state_counts(tenant, request_id)
    return request_out(found, counts=counts)


@router.post("/{request_id}/cancel", response_model=CommandRequestOut)
async def cancel_command(
    tenant: str,
    request_id: str,
    request: Request,
    body: CancelIn | None = None,
    key: ApiKey = Depends(scope("execute")),
) -> CommandRequestOut:
    """Cancel every execution of the request that has not ended."""
    service = request.app.state.service
    reason = body.reason if body else None
    await service.store.cancel_request(tenant, request_id, actor(key), reason, service.clock.now())
    return await get_command(tenant, request_id, request, key)


@router.get("/{request_id}/executions", response_model=PageOut[ExecutionOut])
async def request_status(
    tenant: str,
    request_id: str,
    request: Request,
    device: CsvQuery = None,
    state: CsvQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[ExecutionOut]:
    """The request's status list: each device's execution, filtered by device and state."""
    store = request.app.state.service.store
    await store.get_request(tenant, request_id)
    flt = ExecutionFilter(
        request_ids=(request_id,), device_ids=csv_devices(device), states=csv_states(state)
    )
    page = await store.list_executions(tenant, flt, limit, offset)
    return page_out(request, page, limit, offset, execution_out)

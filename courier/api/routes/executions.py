"""Executions: list and filter, get, history, state updates, cancel, re-issue."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request

from courier.api.auth import actor, scope
from courier.api.convert import event_out, execution_out, page_out
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import (
    CsvQuery,
    Limit,
    Offset,
    csv,
    csv_devices,
    csv_states,
    timestamp,
)
from courier.core.records import ApiKey
from courier.schemas.api import CancelIn, EventOut, ExecutionOut, PageOut, StateUpdateIn
from courier.store import ExecutionFilter

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/tenants/{tenant}/executions", tags=["executions"]
)


@router.get("", response_model=PageOut[ExecutionOut])
async def list_executions(
    tenant: str,
    request: Request,
    request_ids: CsvQuery = None,
    device_ids: CsvQuery = None,
    state: CsvQuery = None,
    command: str | None = None,
    exclude_internal_commands: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[ExecutionOut]:
    """Executions across requests, newest first."""
    flt = ExecutionFilter(
        request_ids=csv(request_ids),
        device_ids=csv_devices(device_ids),
        states=csv_states(state),
        command=command,
        internal=False if exclude_internal_commands else None,
        since=timestamp(since),
        until=timestamp(until),
    )
    page = await request.app.state.service.store.list_executions(tenant, flt, limit, offset)
    return page_out(request, page, limit, offset, execution_out)


@router.get("/{execution_id}", response_model=ExecutionOut)
async def get_execution(
    tenant: str, execution_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> ExecutionOut:
    execution = await request.app.state.service.store.get_execution(tenant, execution_id)
    return execution_out(execution)


@router.get("/{execution_id}/history", response_model=list[EventOut])
async def history(
    tenant: str, execution_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> list[EventOut]:
    """Every event of the execution, oldest first: transitions, replies, attempts."""
    events = await request.app.state.service.store.history(tenant, execution_id)
    return [event_out(e) for e in events]


@router.put("/{execution_id}/state", response_model=ExecutionOut)
async def update_state(
    tenant: str,
    execution_id: str,
    body: StateUpdateIn,
    request: Request,
    key: ApiKey = Depends(scope("execute")),
) -> ExecutionOut:
    """A device or agent reports a state; illegal transitions answer 409 with the current state."""
    service = request.app.state.service
    execution = await service.store.update_state(
        tenant,
        execution_id,
        body.state,
        body.reason,
        body.output,
        body.progress,
        actor(key),
        service.clock.now(),
    )
    return execution_out(execution)


@router.post("/{execution_id}/cancel", response_model=ExecutionOut)
async def cancel_execution(
    tenant: str,
    execution_id: str,
    request: Request,
    body: CancelIn | None = None,
    key: ApiKey = Depends(scope("execute")),
) -> ExecutionOut:
    """Cancel; a device that may hold the command gets a cancel notice."""
    service = request.app.state.service
    change = await service.store.cancel_execution(
        tenant, execution_id, actor(key), body.reason if body else None, service.clock.now()
    )
    return execution_out(change.after)


@router.post("/{execution_id}/retry", status_code=201, response_model=ExecutionOut)
async def retry_execution(
    tenant: str, execution_id: str, request: Request, key: ApiKey = Depends(scope("execute"))
) -> ExecutionOut:
    """Re-issue an ended execution as a new one linked to it (retry_of)."""
    service = request.app.state.service
    execution = await service.store.reissue(
        tenant, execution_id, actor(key), service.config.queue_bound, service.clock.now()
    )
    return execution_out(execution)

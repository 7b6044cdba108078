"""Tenant settings: the time zone of console-time schedules."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from courier.api.auth import scope
from courier.api.jsonbody import JsonRoute
from courier.core.records import ApiKey
from courier.schemas.fleet import TenantOut, TenantPatch

router = APIRouter(route_class=JsonRoute, prefix="/v1/tenants/{tenant}", tags=["tenants"])


@router.get("", response_model=TenantOut)
async def get_tenant(
    tenant: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> TenantOut:
    found = await request.app.state.service.store.get_tenant(tenant)
    return TenantOut(id=found.id, timezone=found.timezone)


@router.patch("", response_model=TenantOut)
async def update_tenant(
    tenant: str, body: TenantPatch, request: Request, key: ApiKey = Depends(scope("admin"))
) -> TenantOut:
    found = await request.app.state.service.store.set_tenant_timezone(tenant, body.timezone)
    return TenantOut(id=found.id, timezone=found.timezone)

"""API keys of a tenant (admin scope)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from courier.api.auth import scope
from courier.api.convert import api_key_out
from courier.api.jsonbody import JsonRoute
from courier.core.records import ApiKey
from courier.schemas.api import ApiKeyCreated, ApiKeyIn, ApiKeyOut

router = APIRouter(route_class=JsonRoute, prefix="/v1/tenants/{tenant}/apikeys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(
    tenant: str, body: ApiKeyIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> ApiKeyCreated:
    """A new key; the answer is the only place the key itself appears."""
    created, token = await request.app.state.service.create_api_key(
        tenant, list(body.scopes), body.name, body.expires_in
    )
    return ApiKeyCreated(**api_key_out(created).model_dump(), key=token)


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(
    tenant: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> list[ApiKeyOut]:
    keys = await request.app.state.service.store.list_api_keys(tenant)
    return [api_key_out(k) for k in keys]


@router.delete("/{key_id}", response_model=ApiKeyOut)
async def revoke_key(
    tenant: str, key_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> ApiKeyOut:
    """Revoke a key: it answers 401 from now on."""
    revoked = await request.app.state.service.revoke_api_key(tenant, key_id)
    return api_key_out(revoked)

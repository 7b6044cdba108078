"""Who is calling: the bearer API key, its tenant and scopes, and its rate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Path, Request

from courier.core.records import ApiKey
from courier.errors import NotFound, RateLimited, Unauthorized
from courier.ids import TENANT_ID_PATTERN

TenantPath = Path(pattern=TENANT_ID_PATTERN, description="tenant id")


async def current_key(request: Request, tenant: str = TenantPath) -> ApiKey:
    """The caller's key; 401 without a valid one, 404 for another tenant, 429 past its rate."""
    state = request.app.state
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    key: ApiKey = await state.service.authenticate(token.strip())
    wait = state.rate_limiter.check(key.id, state.service.clock.now())
    if wait > 0:
        raise RateLimited(wait)
    if key.tenant != tenant:
        raise NotFound(f"no tenant {tenant}")
    return key


def scope(name: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that answers the key if it has scope `name` (admin has every scope).
    One level, not one on top of `current_key`: each level costs every request its solving."""

    async def check(request: Request, tenant: str = TenantPath) -> ApiKey:
        key = await current_key(request, tenant)
        request.app.state.service.require_scope(key, name)
        return key

    return check


def actor(key: ApiKey) -> str:
    return f"apikey:{key.id}"

"""The command catalogue: built-in definitions (Esper, EnOS) and the tenant's own."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request, Response

from courier.api.auth import scope
from courier.api.jsonbody import JsonRoute
from courier.core.catalogue import BUILTINS
from courier.core.records import ApiKey
from courier.errors import AlreadyExists, InvalidInput, NotFound
from courier.ids import NAME_PATTERN
from courier.schemas.fleet import DefinitionIn, DefinitionOut

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/tenants/{tenant}/definitions", tags=["definitions"]
)


@router.post("", status_code=201, response_model=DefinitionOut, response_model_by_alias=True)
async def create_definition(
    tenant: str, body: DefinitionIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> DefinitionOut:
    """Add a command to the tenant's catalogue; its args are then checked on every request."""
    service = request.app.state.service
    if await service.store.definition_of(tenant, body.name) is not None:
        raise AlreadyExists(f"definition {body.name} exists; PUT it to change it")
    return DefinitionOut.of(await service.put_definition(tenant, body))


@router.get("", response_model=list[DefinitionOut], response_model_by_alias=True)
async def list_definitions(
    tenant: str,
    request: Request,
    builtin: bool | None = None,
    key: ApiKey = Depends(scope("read")),
) -> list[DefinitionOut]:
    """The built-in definitions and the tenant's own (`builtin=false` for the latter only)."""
    own = await request.app.state.service.store.list_definitions(tenant)
    found = [*BUILTINS.values(), *own]
    if builtin is not None:
        found = [d for d in found if d.builtin == builtin]
    return [DefinitionOut.of(d) for d in found]


@router.get("/{name}", response_model=DefinitionOut, response_model_by_alias=True)
async def get_definition(
    tenant: str, name: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> DefinitionOut:
    found = await request.app.state.service.store.definition_of(tenant, name)
    if found is None:
        raise NotFound(f"no definition {name}")
    return DefinitionOut.of(found)


@router.put("/{name}", response_model=DefinitionOut, response_model_by_alias=True)
async def put_definition(
    tenant: str,
    name: str,
    body: DefinitionIn,
    request: Request,
    key: ApiKey = Depends(scope("admin")),
) -> DefinitionOut:
    """Create or replace a tenant definition (built-ins cannot be changed)."""
    if body.name != name:
        raise InvalidInput(f"the body names {body.name!r}, the path {name!r}")
    if not re.fullmatch(NAME_PATTERN, name):
        raise InvalidInput(f"definition names must match {NAME_PATTERN}")
    return DefinitionOut.of(await request.app.state.service.put_definition(tenant, body))


@router.delete("/{name}", status_code=204)
async def delete_definition(
    tenant: str, name: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    await request.app.state.service.delete_definition(tenant, name)
    return Response(status_code=204)

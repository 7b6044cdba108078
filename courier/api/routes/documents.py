"""Software update packages, settings (named JSON documents) and stored commands."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends, Request, Response

from courier.api.auth import scope
from courier.api.convert import page_out
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import Limit, Offset
from courier.core.catalogue import validate_args
from courier.core.documents import Setting, SoftwareUpdate, StoredCommand
from courier.core.records import ApiKey
from courier.errors import InvalidInput
from courier.ids import new_id
from courier.schemas.api import PageOut
from courier.schemas.documents import (
    SettingIn,
    SettingOut,
    SoftwareUpdateIn,
    SoftwareUpdateOut,
    StoredCommandIn,
    StoredCommandOut,
)

router = APIRouter(route_class=JsonRoute, prefix="/v1/tenants/{tenant}")


@router.post(
    "/software_updates",
    status_code=201,
    response_model=SoftwareUpdateOut,
    tags=["software updates"],
)
async def add_software_update(
    tenant: str, body: SoftwareUpdateIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> SoftwareUpdateOut:
    """A package: an uploaded file with its version and target. A `software_update` command
    names it; the device gets a signed download link and the file's sha256."""
    service = request.app.state.service
    update = SoftwareUpdate(
        id=new_id(), tenant=tenant, created_at=service.clock.now(), **body.model_dump()
    )
    return SoftwareUpdateOut.of(await service.store.add_software_update(update))


@router.get(
    "/software_updates", response_model=PageOut[SoftwareUpdateOut], tags=["software updates"]
)
async def list_software_updates(
    tenant: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[SoftwareUpdateOut]:
    store = request.app.state.service.store
    page = await store.list_documents(SoftwareUpdate, tenant, limit, offset)
    return page_out(request, page, limit, offset, SoftwareUpdateOut.of)


@router.get(
    "/software_updates/{update_id}", response_model=SoftwareUpdateOut, tags=["software updates"]
)
async def get_software_update(
    tenant: str, update_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> SoftwareUpdateOut:
    store = request.app.state.service.store
    return SoftwareUpdateOut.of(await store.get_document(SoftwareUpdate, tenant, update_id))


@router.delete("/software_updates/{update_id}", status_code=204, tags=["software updates"])
async def delete_software_update(
    tenant: str, update_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    await request.app.state.service.store.delete_document(SoftwareUpdate, tenant, update_id)
    return Response(status_code=204)


@router.post("/settings", status_code=201, response_model=SettingOut, tags=["settings"])
async def add_setting(
    tenant: str, body: SettingIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> SettingOut:
    """A named JSON document; a `setting` command pushes it to devices."""
    service = request.app.state.service
    now = service.clock.now()
    setting = Setting(
        id=new_id(), tenant=tenant, name=body.name, created_at=now, document=body.document
    )
    return SettingOut.of(await service.store.put_document(setting))


@router.get("/settings", response_model=PageOut[SettingOut], tags=["settings"])
async def list_settings(
    tenant: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[SettingOut]:
    page = await request.app.state.service.store.list_documents(Setting, tenant, limit, offset)
    return page_out(request, page, limit, offset, SettingOut.of)


@router.get("/settings/{setting_id}", response_model=SettingOut, tags=["settings"])
async def get_setting(
    tenant: str, setting_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> SettingOut:
    store = request.app.state.service.store
    return SettingOut.of(await store.get_document(Setting, tenant, setting_id))


@router.put("/settings/{setting_id}", response_model=SettingOut, tags=["settings"])
async def put_setting(
    tenant: str,
    setting_id: str,
    body: SettingIn,
    request: Request,
    key: ApiKey = Depends(scope("admin")),
) -> SettingOut:
    """Change a setting's name or document; commands created after this carry the new one."""
    service = request.app.state.service
    current = await service.store.get_document(Setting, tenant, setting_id)
    changed = replace(
        current, name=body.name, document=body.document, updated_at=service.clock.now()
    )
    return SettingOut.of(await service.store.put_document(changed))


@router.delete("/settings/{setting_id}", status_code=204, tags=["settings"])
async def delete_setting(
    tenant: str, setting_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    await request.app.state.service.store.delete_document(Setting, tenant, setting_id)
    return Response(status_code=204)


@router.post(
    "/stored_commands", status_code=201, response_model=StoredCommandOut, tags=["stored commands"]
)
async def add_stored_command(
    tenant: str, body: StoredCommandIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> StoredCommandOut:
    """A saved command with its arguments, run by id (a gateway command's `command_id`)."""
    service = request.app.state.service
    definition = await service.definition(tenant, body.command)
    if definition is None:
        raise InvalidInput(f"command: no definition {body.command}; define it first")
    validate_args(definition, body.args)
    stored = StoredCommand(
        id=new_id(), tenant=tenant, created_at=service.clock.now(), **body.model_dump()
    )
    return StoredCommandOut.of(await service.store.put_document(stored))


@router.get("/stored_commands", response_model=PageOut[StoredCommandOut], tags=["stored commands"])
async def list_stored_commands(
    tenant: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[StoredCommandOut]:
    store = request.app.state.service.store
    page = await store.list_documents(StoredCommand, tenant, limit, offset)
    return page_out(request, page, limit, offset, StoredCommandOut.of)


@router.get(
    "/stored_commands/{command_id}", response_model=StoredCommandOut, tags=["stored commands"]
)
async def get_stored_command(
    tenant: str, command_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> StoredCommandOut:
    store = request.app.state.service.store
    return StoredCommandOut.of(await store.get_document(StoredCommand, tenant, command_id))


@router.delete("/stored_commands/{command_id}", status_code=204, tags=["stored commands"])
async def delete_stored_command(
    tenant: str, command_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    await request.app.state.service.store.delete_document(StoredCommand, tenant, command_id)
    return Response(status_code=204)

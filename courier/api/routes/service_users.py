"""A tenant's MQTT service users: they may publish its requests and read its events."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from courier.api.auth import scope
from courier.api.convert import page_out
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import Limit, Offset
from courier.broker_auth import check_username
from courier.clock import isoformat
from courier.core.documents import ServiceUser
from courier.core.records import ApiKey
from courier.credentials import mosquitto_hash, new_device_password
from courier.errors import NotFound
from courier.ids import new_id
from courier.schemas.api import PageOut
from courier.schemas.common import StrictIn

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/tenants/{tenant}/service_users", tags=["service users"]
)


class ServiceUserIn(StrictIn):
    username: str = Field(min_length=1, max_length=64)


class ServiceUserOut(BaseModel):
    username: str
    tenant: str
    created_on: str

    @classmethod
    def of(cls, user: ServiceUser) -> ServiceUserOut:
        return cls(username=user.name, tenant=user.tenant, created_on=isoformat(user.created_at))


class ServiceUserCreated(ServiceUserOut):
    password: str = Field(description="its MQTT password, shown only once")


@router.post("", status_code=201, response_model=ServiceUserCreated)
async def add_service_user(
    tenant: str, body: ServiceUserIn, request: Request, key: ApiKey = Depends(scope("admin"))
) -> ServiceUserCreated:
    """An MQTT user for upstream services: it may publish `P/tenants/{tenant}/requests` and
    read `P/tenants/{tenant}/events` and `.../responses/#`, nothing else."""
    service = request.app.state.service
    service.check_username_free(body.username)
    password = new_device_password()
    user = ServiceUser(
        id=new_id(),
        tenant=tenant,
        name=check_username(body.username),
        created_at=service.clock.now(),
        password_hash=mosquitto_hash(password),
    )
    await service.store.add_service_user(user)
    await service.sync_broker()
    return ServiceUserCreated(**ServiceUserOut.of(user).model_dump(), password=password)


@router.get("", response_model=PageOut[ServiceUserOut])
async def list_service_users(
    tenant: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("admin")),
) -> PageOut[ServiceUserOut]:
    store = request.app.state.service.store
    page = await store.list_documents(ServiceUser, tenant, limit, offset)
    return page_out(request, page, limit, offset, ServiceUserOut.of)


@router.delete("/{username}", status_code=204)
async def delete_service_user(
    tenant: str, username: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    """Remove the user; Mosquitto drops its connection on the reload."""
    service = request.app.state.service
    page = await service.store.list_documents(ServiceUser, tenant, 1000, 0)
    found = [u for u in page.results if u.name == username]
    if not found:
        raise NotFound(f"no service user {username}")
    await service.store.delete_document(ServiceUser, tenant, found[0].id)
    await service.sync_broker()
    return Response(status_code=204)

"""The file store over REST, and the signed links devices use without an API key."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse

from courier.api.auth import scope
from courier.api.convert import page_out
from courier.api.jsonbody import JsonRoute
from courier.api.routes.common import Limit, Offset
from courier.core.documents import StoredFile
from courier.core.records import ApiKey
from courier.errors import InvalidInput, NotFound
from courier.files.links import BadLink
from courier.files.service import Files
from courier.schemas.api import PageOut
from courier.schemas.documents import FileOut, UploadedOut
from courier.schemas.states import IN_FLIGHT

router = APIRouter(route_class=JsonRoute, tags=["files"])
TENANT = "/v1/tenants/{tenant}/files"
_STREAMED = re.compile(r"^/v1/(tenants/[^/]+/files|uploads/[^/]+)$")


def is_streamed(method: str, path: str) -> bool:
    """Uploads go to disk under the file size limit, not the JSON body limit."""
    return method in ("POST", "PUT") and _STREAMED.match(path) is not None


def _files(request: Request) -> Files:
    files: Files = request.app.state.service.files
    return files


def _download(files: Files, stored: StoredFile) -> FileResponse:
    return FileResponse(
        files.path(stored),
        media_type=stored.content_type,
        filename=stored.name,
        headers={"X-Checksum-SHA256": stored.sha256},
    )


@router.post(
    TENANT,
    status_code=201,
    response_model=FileOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def upload_file(
    tenant: str,
    request: Request,
    name: str = Query(min_length=1, max_length=255, description="the file's name"),
    key: ApiKey = Depends(scope("admin")),
) -> FileOut:
    """Upload a file: the raw bytes are the body (streamed, up to the file size limit)."""
    service = request.app.state.service
    stored = await _files(request).add(
        tenant,
        name,
        request.headers.get("content-type", ""),
        request.stream(),
        service.clock.now(),
    )
    return FileOut.of(stored)


@router.get(TENANT, response_model=PageOut[FileOut])
async def list_files(
    tenant: str,
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
    key: ApiKey = Depends(scope("read")),
) -> PageOut[FileOut]:
    page = await request.app.state.service.store.list_documents(StoredFile, tenant, limit, offset)
    return page_out(request, page, limit, offset, FileOut.of)


@router.get(TENANT + "/{file_id}", response_model=FileOut)
async def get_file(
    tenant: str, file_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> FileOut:
    store = request.app.state.service.store
    return FileOut.of(await store.get_document(StoredFile, tenant, file_id))


@router.get(TENANT + "/{file_id}/content", response_class=FileResponse)
async def file_content(
    tenant: str, file_id: str, request: Request, key: ApiKey = Depends(scope("read"))
) -> FileResponse:
    """The bytes, with their sha256 in `X-Checksum-SHA256`."""
    store = request.app.state.service.store
    return _download(_files(request), await store.get_document(StoredFile, tenant, file_id))


@router.delete(TENANT + "/{file_id}", status_code=204)
async def delete_file(
    tenant: str, file_id: str, request: Request, key: ApiKey = Depends(scope("admin"))
) -> Response:
    """Delete a file (refused with 409 while a software update uses it)."""
    await _files(request).delete(tenant, file_id)
    return Response(status_code=204)


@router.get("/v1/files/{token}", response_class=FileResponse, tags=["device links"])
async def download_by_link(token: str, request: Request) -> FileResponse:
    """A device downloads a file through the signed link of its command (no API key)."""
    service = request.app.state.service
    files = _files(request)
    link = (await files.links(service.clock)).read(token, "get", service.clock.now())
    try:
        stored = await service.store.get_document(StoredFile, link["t"], link["f"])
    except NotFound:
        raise BadLink("the file of this link was deleted") from None
    return _download(files, stored)


@router.put(
    "/v1/uploads/{token}", status_code=201, response_model=UploadedOut, tags=["device links"]
)
async def upload_by_link(token: str, request: Request) -> UploadedOut:
    """A device uploads the file a `filedownload` command asked for (raw body, no API key),
    while its execution runs. The file is kept with the execution's id and named in its
    history (a `file` event); the device reports the answer as its output."""
    service = request.app.state.service
    files = _files(request)
    link = (await files.links(service.clock)).read(token, "put", service.clock.now())
    tenant, execution_id = link["t"], link["e"]
    try:
        execution = await service.store.get_execution(tenant, execution_id)
    except NotFound:
        raise BadLink("the execution of this link no longer exists") from None
    if execution.state not in IN_FLIGHT:
        raise BadLink(f"the execution of this link is {execution.state}: it takes no upload")
    name = str(link.get("n", "")).rstrip("/").rsplit("/", 1)[-1] or execution_id
    if "\0" in name:
        raise InvalidInput("the file path names no file")
    stored = await files.add(
        tenant,
        name,
        request.headers.get("content-type", ""),
        request.stream(),
        service.clock.now(),
        execution_id=execution_id,
    )
    await service.store.record_upload(execution, stored, service.clock.now())
    return UploadedOut(file_id=stored.id, size=stored.size, sha256=stored.sha256)

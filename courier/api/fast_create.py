"""POST /v1/tenants/{tenant}/commands without FastAPI's per-request machinery.

The busiest route pays FastAPI's routing, dependency solving and middleware layers on every
call, more than Courier's own work for the command. This ASGI layer, in front of the whole
application, answers the ordinary request itself: a body within the size limit, a valid key
with the `execute` scope, a JSON body that validates, within the key's rate. Anything else (no
or bad key, another tenant, bad JSON, a body that breaks a rule, too big a body, an odd
header, over the rate) goes on, body replayed, to the application and its declared route,
which give the same answers as always: error precedence and shapes have one definition.
Nothing here has an effect until the command is created, so handing over is always safe.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.datastructures import State
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from courier.api import problems
from courier.api.auth import actor
from courier.api.convert import request_out
from courier.api.limits import declared_length
from courier.errors import CourierError
from courier.ids import TENANT_ID_PATTERN
from courier.schemas.api import CommandRequestIn
from courier.schemas.common import strict_json

_CREATE = re.compile(r"/v1/tenants/([^/]+)/commands")
CREATE_ROUTE = "/v1/tenants/{tenant}/commands"
ROUTE_KEY = "courier.route"  # the scope key naming the route that answered, for metrics
_TENANT = re.compile(TENANT_ID_PATTERN)
_JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")
_READ = frozenset((b"authorization", b"idempotency-key", b"content-type"))


class FastCreate:
    """In front of `app` (the application, `state` its state): answers the ordinary create
    and hands everything else on."""

    def __init__(self, app: ASGIApp, state: State, max_body: int) -> None:
        self.app = app
        self.state = state
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _CREATE.fullmatch(scope["path"])
        if match is None or declared_length(scope) > self.max_body:
            await self.app(scope, receive, send)
            return
        body, last = await _read_body(receive, self.max_body)
        ordinary = None
        if _complete(last) and len(body) <= self.max_body:
            ordinary = _ordinary(scope, match.group(1), body)
        if ordinary is None or not await self._create(scope, receive, send, *ordinary):
            await self.app(scope, _replay(body, last, receive), send)

    async def _create(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        tenant: str,
        token: str,
        command: CommandRequestIn,
        idempotency_key: str | None,
    ) -> bool:
        """True once answered; False (nothing done) if the full route must answer."""
        state = self.state
        service = state.service
        try:
            key = await service.authenticate(token)
            service.require_scope(key, "execute")
        except CourierError:
            return False
        if key.tenant != tenant:
            return False
        if state.rate_limiter.check(key.id, service.clock.now()) > 0:
            return False
        scope[ROUTE_KEY] = CREATE_ROUTE  # answered here from now on, whatever the outcome
        try:
            created = await service.create_command(tenant, command, actor(key), idempotency_key)
        except CourierError as exc:
            response = await problems.courier_error(Request(scope, receive), exc)
            await response(scope, receive, send)
            return True
        answer = request_out(created.request, created.executions).model_dump_json().encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer)).encode()),
        ]
        if created.replayed:
            headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        return True


def _ordinary(
    scope: Scope, tenant: str, body: bytes
) -> tuple[str, str, CommandRequestIn, str | None] | None:
    """(tenant, token, command, idempotency key) of a request with nothing unusual, else None."""
    if not body or _TENANT.fullmatch(tenant) is None:
        return None
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _READ:
            if name in found:  # which one counts is the route's business
                return None
            found[name] = value
    token = found.get(b"authorization")
    idempotency_key = found.get(b"idempotency-key")
    content_type = found.get(b"content-type")
    if token is None or (content_type is not None and content_type.lower() not in _JSON_TYPES):
        return None
    scheme, _, secret = token.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    idempotency = None
    if idempotency_key is not None:
        idempotency = idempotency_key.decode("latin-1")
        if not 1 <= len(idempotency) <= 255:
            return None
    try:
        command = CommandRequestIn.model_validate(strict_json(body))
    except (ValueError, ValidationError):  # JSONDecodeError is a ValueError
        return None
    return tenant, secret.strip(), command, idempotency


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, Message]:
    """The body read, and the message that ended the reading: the last chunk, a disconnect,
    or the chunk that took the body over `limit` (the rest is left unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False) or size > limit:
            return b"".join(chunks), message


def _complete(last: Message) -> bool:
    return last["type"] == "http.request" and not last.get("more_body", False)


def _replay(body: bytes, last: Message, receive: Receive) -> Receive:
    """A receive that gives what was read again (as one chunk), then what the original gives:
    the disconnect that cut the body off, or the rest of a body left unread."""
    cut_off = last["type"] != "http.request"
    more = cut_off or last.get("more_body", False)
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": more}]
    if cut_off:
        pending.append(last)
    pending.reverse()

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


class CourierApp(FastAPI):
    """The FastAPI application with the fast layer in front of it (`install`); every HTTP
    request it answers is counted in `courier_http_requests` when the state has metrics."""

    fast: FastCreate | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = getattr(self.state, "metrics", None)
        if scope["type"] != "http" or metrics is None:
            await self._answer(scope, receive, send)
            return
        status = ""

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self._answer(scope, receive, sending)
        except BaseException:
            status = status or "500"
            raise
        finally:
            # A client gone before any answer has no status: "none".
            metrics.count_http(scope["method"], route_of(scope), status or "none")

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast(scope, receive, send)

    async def behind(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application itself, the fast layer's way on."""
        await super().__call__(scope, receive, send)


def route_of(scope: Scope) -> str:
    """The template of the route that answered (never the raw path: ids would make a label
    per device), or "unmatched"."""
    named = scope.get(ROUTE_KEY)
    if named is not None:
        return str(named)
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


def install(app: CourierApp, max_body: int) -> None:
    app.fast = FastCreate(app.behind, app.state, max_body)

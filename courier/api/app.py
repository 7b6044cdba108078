"""The FastAPI application: routes, error shapes, guards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from courier import __version__
from courier.api import fast_create, problems
from courier.api.limits import BodyLimit, RateLimiter
from courier.api.routes import (
    apikeys,
    commands,
    definitions,
    devices,
    documents,
    executions,
    files,
    gateway_commands,
    groups,
    health,
    payloads,
    service_users,
    tenants,
)
from courier.metrics import Metrics
from courier.service import Service

if TYPE_CHECKING:  # the bridge imports the API's converters
    from courier.bridge import Bridge

DESCRIPTION = """Courier delivers commands to devices over MQTT and never loses one.

Authenticate with `Authorization: Bearer <api key>` (`courier apikey create`). Errors are
`application/problem+json`. Lists are paginated with `limit` and `offset`."""


def create_app(
    service: Service,
    metrics: Metrics,
    bridge: Bridge | None = None,
    max_body: int = 256 * 1024,
    rate_limit: float = 100.0,
    rate_burst: int = 200,
) -> FastAPI:
    app = fast_create.CourierApp(title="Courier", version=__version__, description=DESCRIPTION)
    app.router.redirect_slashes = False  # ".../d1%2F" is not "d1": no redirect to guess
    app.state.service = service
    app.state.metrics = metrics
    app.state.bridge = bridge
    app.state.rate_limiter = RateLimiter(rate_limit, rate_burst)
    problems.install(app)
    for module in (  # the busiest routes first: a request is matched route by route
        commands,
        executions,
        health,
        tenants,
        devices,
        groups,
        definitions,
        apikeys,
        files,
        documents,
        gateway_commands,
        service_users,
        payloads,
    ):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=max_body, exempt=files.is_streamed)
    fast_create.install(app, max_body)
    return app

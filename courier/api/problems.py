"""Errors as application/problem+json (RFC 9457), with precise messages."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from courier.errors import CourierError, RateLimited

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:courier:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


async def courier_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CourierError)
    title = (type(exc).__doc__ or type(exc).__name__).strip().splitlines()[0]
    if exc.status >= 500:
        log.error("request failed: %s", exc.message, extra={"path": request.url.path})
    response = problem(exc.status, exc.slug, title, exc.message, **exc.extra)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _location(tuple(e["loc"])), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        first = next(e for e in exc.errors() if e["type"] == "json_invalid")
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        return problem(
            400, "malformed-json", "Malformed JSON", f"the body is not valid JSON: {reason}"
        )
    detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    return problem(422, "invalid-input", "The input breaks a rule.", detail, errors=errors)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
        exc.status_code, "http-error"
    )
    response = problem(exc.status_code, slug, str(exc.detail), str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def install(app: FastAPI) -> None:
    app.add_exception_handler(CourierError, courier_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)

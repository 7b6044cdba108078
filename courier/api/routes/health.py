"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers and the bridge is connected to the broker."""
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        await state.service.store.next_wake_at()
        checks["store"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["store"] = f"failing: {exc}"
    bridge = state.bridge
    checks["broker"] = "ok" if bridge is None or bridge.ready else "not connected"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics; queue depth and in-flight counts are read from the store."""
    state = request.app.state
    counts = await state.service.store.state_counts()
    gauge = state.metrics.executions
    for name in ("SCHEDULED", "QUEUED", "SENT", "ACKNOWLEDGED", "IN_PROGRESS"):
        gauge.labels(name).set(counts.get(name, 0))
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

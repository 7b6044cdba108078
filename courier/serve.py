"""`courier serve`: the bridge, the REST API and metrics in one process, one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from courier.api import create_app
from courier.bridge import Bridge, BridgeConfig
from courier.bridge.engine import tune_gc
from courier.bridge.ingress import Ingress
from courier.broker_sync import BrokerSync
from courier.clock import SystemClock
from courier.errors import ConfigError
from courier.metrics import Metrics
from courier.service import Service, ServiceConfig
from courier.settings import Settings
from courier.store import open_store
from courier.transport import ConnectOptions
from courier.transport.gmqtt_transport import GmqttTransport

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Courier handles SIGTERM for everything."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop`): stop taking work, finish writes, close cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, port = settings.http_address
    sock = _bind(host, port)
    clock, metrics = SystemClock(), Metrics()
    store = open_store(settings.store)
    await store.open()
    transport = GmqttTransport(
        ConnectOptions.from_url(settings.broker, client_id=settings.client_id, clean_start=False)
    )
    bridge = Bridge(
        store,
        transport,
        BridgeConfig(
            prefix=settings.prefix,
            max_payload=settings.max_payload,
            in_flight=settings.in_flight,
            sweep_interval=settings.sweep_interval,
            lwm2m_mountpoint=settings.lwm2m_mountpoint,
        ),
        clock,
        metrics,
    )
    service = Service(
        store,
        ServiceConfig(
            queue_bound=settings.queue_bound,
            ack_timeout=settings.ack_timeout,
            in_flight=settings.in_flight,
            claim_on_create=True,
            files_dir=settings.files_dir,
            max_file_size=settings.max_file_size,
            public_url=settings.device_url,
            url_ttl=settings.url_ttl,
        ),
        clock,
    )
    bridge.ingress = Ingress(service, metrics, settings.max_payload)
    bridge.files = service.files
    if settings.broker_password_file:
        service.broker = BrokerSync.from_paths(
            store,
            settings.prefix,
            settings.broker,
            settings.broker_password_file,
            settings.broker_acl_file,
            settings.broker_pid_file,
            settings.lwm2m_mountpoint,
        )
        await service.sync_broker()  # before connecting: Courier's own user must exist
    app = create_app(
        service,
        metrics,
        bridge,
        max_body=settings.max_payload,
        rate_limit=settings.rate_limit,
        rate_burst=settings.rate_burst,
    )
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(settings.shutdown_grace),
        )
    )
    tune_gc()  # the process's own: set up, its heap is frozen out of the collector's view
    log.info(
        "courier serving",
        extra={
            "http": settings.http,
            "broker": settings.broker,
            "store": settings.store,
            "prefix": settings.prefix,
        },
    )
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_run_http(server, sock, stop), name="http")
            group.create_task(_run_bridge(bridge, stop, settings.shutdown_grace), name="bridge")
    finally:
        await store.close()
        log.info("courier stopped")


async def _run_http(server: uvicorn.Server, sock: socket.socket, stop: asyncio.Event) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stop.set()
    await task
    stopped.cancel()


async def _run_bridge(bridge: Bridge, stop: asyncio.Event, grace: float) -> None:
    run = asyncio.create_task(bridge.run(stop))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if run.done():
        stopped.cancel()
        await run  # a bridge that ended on its own raises here and stops the service
        return
    try:
        await asyncio.wait_for(run, grace)
    except TimeoutError:
        log.warning("bridge did not stop within %.0f s; cancelled", grace)

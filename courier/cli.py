"""The `courier` command: serve, apikey, devices, groups, send, status, payloads, simulate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx

from courier import __version__
from courier.errors import CourierError
from courier.logs import configure_logging
from courier.settings import Settings, load_toml

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "EXPIRED"}


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed on Linux and macOS
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def option(*decls: str, **attrs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option whose --help names its COURIER_<NAME> environment variable."""
    long_name = next(d for d in decls if d.startswith("--")).split("/")[0]
    attrs.setdefault("envvar", "COURIER_" + long_name[2:].replace("-", "_").upper())
    attrs.setdefault("show_envvar", True)
    return click.option(*decls, **attrs)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="courier")
def main() -> None:
    """Courier delivers commands to devices over MQTT and never loses one."""


# --- serve ---------------------------------------------------------------------------------


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    defaults = Settings.defaults()
    for name, help_text in reversed(list(Settings.help_of().items())):
        default = defaults[name]
        fn = click.option(
            f"--{name.replace('_', '-')}",
            name,
            type=type(default),
            default=None,
            envvar=f"COURIER_{name.upper()}",
            show_envvar=True,
            help=f"{help_text} [default: {default}]",
        )(fn)
    return fn


@main.command()
@option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="COURIER_CONFIG",
    show_envvar=True,
    help="TOML file of settings (top level or [courier]); flags and environment win over it",
)
@_settings_options
def serve(config_file: Path | None, **options: Any) -> None:
    """Run the bridge, the REST API and the metrics endpoint in one process."""
    values = load_toml(config_file) if config_file else {}
    values.update({k: v for k, v in options.items() if v is not None})
    try:
        settings = Settings.from_mapping(values)
    except CourierError as exc:
        _fail(exc.message)
        return
    configure_logging(settings.log_level, settings.log_format)
    from courier.serve import serve as run_service

    try:
        with _runner() as runner:
            runner.run(run_service(settings))
    except CourierError as exc:
        _fail(exc.message)


# --- apikey (works on the store directly) ---------------------------------------------------

STORE_OPTION = option(
    "--store",
    default="sqlite:///courier.db",
    envvar="COURIER_STORE",
    show_envvar=True,
    show_default=True,
    help="store URL, as for courier serve",
)


@main.group()
def apikey() -> None:
    """Create, list and revoke API keys (directly in the store; works before serving)."""


async def _with_service(store_url: str, action: Callable[[Any], Any]) -> Any:
    from courier.clock import SystemClock
    from courier.service import Service, ServiceConfig
    from courier.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        return await action(Service(store, ServiceConfig(), SystemClock()))
    finally:
        await store.close()


@apikey.command("create")
@option(
    "--tenant",
    required=True,
    envvar="COURIER_TENANT",
    show_envvar=True,
    help="tenant the key belongs to (created if new)",
)
@option(
    "--scopes",
    default="read,execute,admin",
    show_default=True,
    help="comma-separated: read, execute, admin",
)
@option("--name", default="", help="a label for the key")
@option(
    "--expires-in",
    type=click.IntRange(min=60),
    default=None,
    help="seconds until the key expires (at least 60)",
)
@option("--json", "as_json", is_flag=True, help="print a JSON object with `key`")
@STORE_OPTION
def apikey_create(
    tenant: str, scopes: str, name: str, expires_in: int | None, as_json: bool, store: str
) -> None:
    """Create a key and print it (it is shown only this once)."""
    from courier.ids import is_device_id

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = [s for s in wanted if s not in ("read", "execute", "admin")]
    if bad or not wanted:
        _fail(f"scopes must be among read, execute, admin (got {scopes!r})")
    if not is_device_id(tenant):
        _fail(f"tenant {tenant!r} must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}$")

    async def action(service: Any) -> Any:
        return await service.create_api_key(tenant, wanted, name, expires_in)

    key, token = asyncio.run(_with_service(store, action))
    if as_json:
        click.echo(
            json.dumps({"id": key.id, "tenant": tenant, "scopes": sorted(key.scopes), "key": token})
        )
    else:
        click.echo(token)


@apikey.command("list")
@option("--tenant", required=True, envvar="COURIER_TENANT", show_envvar=True)
@STORE_OPTION
def apikey_list(tenant: str, store: str) -> None:
    """List a tenant's keys (never the keys themselves)."""

    async def action(service: Any) -> Any:
        return await service.store.list_api_keys(tenant)

    now = time.time()
    for key in asyncio.run(_with_service(store, action)):
        state = "active"
        if key.revoked_at is not None:
            state = "revoked"
        elif key.expires_at is not None and key.expires_at <= now:
            state = "expired"
        click.echo(f"{key.id}  {','.join(sorted(key.scopes)):<20} {state:<8} {key.name}")


@apikey.command("revoke")
@option("--tenant", required=True, envvar="COURIER_TENANT", show_envvar=True)
@click.argument("key_id")
@STORE_OPTION
def apikey_revoke(tenant: str, key_id: str, store: str) -> None:
    """Revoke a key by its id."""

    async def action(service: Any) -> Any:
        return await service.revoke_api_key(tenant, key_id)

    try:
        asyncio.run(_with_service(store, action))
    except CourierError as exc:
        _fail(exc.message)
    click.echo(f"revoked {key_id}")


# --- REST clients --------------------------------------------------------------------------

URL_OPTION = option(
    "--url",
    default="http://127.0.0.1:8080",
    envvar="COURIER_URL",
    show_envvar=True,
    show_default=True,
    help="Courier's REST API",
)
KEY_OPTION = option("--key", required=True, envvar="COURIER_KEY", show_envvar=True, help="API key")
TENANT_OPTION = option(
    "--tenant", required=True, envvar="COURIER_TENANT", show_envvar=True, help="tenant id"
)


class Api:
    def __init__(self, url: str, key: str, tenant: str) -> None:
        self.client = httpx.Client(
            base_url=f"{url.rstrip('/')}/v1/tenants/{tenant}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30.0,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach Courier: {exc}")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            _fail(f"{response.status_code}: {detail}")
        return None if response.status_code == 204 else response.json()


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@main.group()
def devices() -> None:
    """Register, list, show and delete devices (over the REST API)."""


@devices.command("register")
@click.argument("device_id")
@option("--kind", type=click.Choice(["device", "gateway"]), default="device")
@option("--label", "labels", multiple=True, help="key=value (repeatable)")
@option("--timezone", default=None, help="IANA time zone, e.g. Europe/Paris")
@option("--protocol", type=click.Choice(["native", "lwm2m"]), default="native")
@option("--gateway", default=None, help="the gateway this device is attached to")
@option(
    "--authorization-id",
    "authorization_ids",
    multiple=True,
    help="who may run its deferred payloads (repeatable)",
)
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def devices_register(
    device_id: str,
    kind: str,
    labels: tuple[str, ...],
    timezone: str | None,
    protocol: str,
    gateway: str | None,
    authorization_ids: tuple[str, ...],
    url: str,
    key: str,
    tenant: str,
) -> None:
    """Register DEVICE_ID and print it with its MQTT password and deferred-payload key
    (both shown only once)."""
    parsed = dict(label.split("=", 1) for label in labels if "=" in label)
    body: dict[str, Any] = {"id": device_id, "kind": kind, "labels": parsed}
    body |= {"protocol": protocol, "authorization_ids": list(authorization_ids)}
    if gateway:
        body["gateway_id"] = gateway
    if timezone:
        body["timezone"] = timezone
    _print(Api(url, key, tenant).call("POST", "/devices", json=body))


@devices.command("list")
@option("--online/--offline", default=None, help="only online (or offline) devices")
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def devices_list(online: bool | None, url: str, key: str, tenant: str) -> None:
    """List devices with their presence."""
    params = {} if online is None else {"online": str(online).lower()}
    page = Api(url, key, tenant).call("GET", "/devices", params={**params, "limit": 1000})
    for d in page["results"]:
        click.echo(f"{d['id']:<40} {'online' if d['online'] else 'offline':<8} {d['kind']}")


@devices.command("show")
@click.argument("device_id")
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def devices_show(device_id: str, url: str, key: str, tenant: str) -> None:
    """Show one device."""
    _print(Api(url, key, tenant).call("GET", f"/devices/{device_id}"))


@devices.command("delete")
@click.argument("device_id")
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def devices_delete(device_id: str, url: str, key: str, tenant: str) -> None:
    """Delete a device; its pending commands are cancelled."""
    Api(url, key, tenant).call("DELETE", f"/devices/{device_id}")
    click.echo(f"deleted {device_id}")


@main.group()
def groups() -> None:
    """Create, list and change groups of devices (over the REST API)."""


@groups.command("create")
@click.argument("name")
@option("--device", "devices", multiple=True, help="a member (repeatable)")
@option("--id", "group_id", default=None, help="the group's id (a UUID is made otherwise)")
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def groups_create(
    name: str, devices: tuple[str, ...], group_id: str | None, url: str, key: str, tenant: str
) -> None:
    """Create group NAME and print it."""
    body: dict[str, Any] = {"name": name, "devices": list(devices)}
    if group_id:
        body["id"] = group_id
    _print(Api(url, key, tenant).call("POST", "/groups", json=body))


@groups.command("list")
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def groups_list(url: str, key: str, tenant: str) -> None:
    """List groups with their sizes."""
    page = Api(url, key, tenant).call("GET", "/groups", params={"limit": 1000})
    for g in page["results"]:
        click.echo(f"{g['id']:<40} {g['size']:>6}  {g['name']}")


@groups.command("add")
@click.argument("group_id")
@click.argument("device_ids", nargs=-1, required=True)
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def groups_add(group_id: str, device_ids: tuple[str, ...], url: str, key: str, tenant: str) -> None:
    """Add devices to a group."""
    api = Api(url, key, tenant)
    for device_id in device_ids:
        api.call("PUT", f"/groups/{group_id}/devices/{device_id}")
    click.echo(f"added {len(device_ids)} device(s) to {group_id}")


@groups.command("remove")
@click.argument("group_id")
@click.argument("device_ids", nargs=-1, required=True)
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def groups_remove(
    group_id: str, device_ids: tuple[str, ...], url: str, key: str, tenant: str
) -> None:
    """Remove devices from a group."""
    api = Api(url, key, tenant)
    for device_id in device_ids:
        api.call("DELETE", f"/groups/{group_id}/devices/{device_id}")
    click.echo(f"removed {len(device_ids)} device(s) from {group_id}")


@main.command()
@click.argument("command")
@option("--device", "devices", multiple=True, help="a target device (repeatable)")
@option("--group", "groups", multiple=True, help="a target group (repeatable)")
@option("--label", "labels", multiple=True, help="dynamic targets: key=value (repeatable)")
@option(
    "--kind",
    type=click.Choice(["device", "gateway"]),
    default=None,
    help="dynamic targets: this kind only",
)
@option("--online/--offline", "online", default=None, help="dynamic targets: by presence")
@option(
    "--filter-device",
    "filter_devices",
    multiple=True,
    help="dynamic targets: candidate device (repeatable)",
)
@option(
    "--filter-group",
    "filter_groups",
    multiple=True,
    help="dynamic targets: candidate group (repeatable)",
)
@option(
    "--device-type",
    type=click.Choice(["all", "active", "inactive"]),
    default=None,
    help="all (queue for offline devices), active (online now) or inactive",
)
@option("--args", "args_json", default="{}", help="command arguments as a JSON object")
@option("--ttl", type=int, default=None, help="seconds the command may wait (0 = instant)")
@option("--timeout", type=float, default=None, help="seconds per attempt for a result")
@option("--priority", type=int, default=None, help="-100 to 100, higher is sent first")
@option("--max-attempts", type=int, default=None, help="sends at most (1-10)")
@option("--retry-on", type=click.Choice(["timeout", "failure", "both"]), default=None)
@option(
    "--schedule",
    type=click.Choice(["IMMEDIATE", "WINDOW", "RECURRING"], case_sensitive=False),
    default=None,
    help="when it may be sent",
)
@option("--start", default=None, help="schedule: from this date-time (ISO 8601)")
@option("--end", default=None, help="schedule: until this date-time (ISO 8601)")
@option("--window-start", default=None, help="schedule: daily window opens, HH:MM")
@option("--window-end", default=None, help="schedule: daily window closes, HH:MM")
@option("--days", default=None, help="schedule: days of the week, e.g. mon,tue,wed")
@option(
    "--time-type",
    type=click.Choice(["console", "device"]),
    default=None,
    help="schedule times in the tenant's zone (console) or each device's (device)",
)
@option("--rollout-rate", type=int, default=None, help="rollout: devices per minute at most")
@option(
    "--abort-percent",
    type=float,
    default=None,
    help="rollout: stop when more than this % of finished executions failed",
)
@option("--abort-min", type=int, default=None, help="rollout: ...of at least this many")
@option("--idempotency-key", default=None, help="repeat-safe creation")
@option("--no-wait", is_flag=True, help="print the request and return at once")
@option(
    "--wait-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="seconds to wait for every execution to end",
)
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def send(
    command: str,
    args_json: str,
    idempotency_key: str | None,
    no_wait: bool,
    wait_timeout: float,
    url: str,
    key: str,
    tenant: str,
    **options: Any,
) -> None:
    """Send COMMAND to devices, groups or a dynamic set, and follow it to the end.

    A progress bar shows the executions by state; the answer is the executions as JSON.
    Exits 0 when every one SUCCEEDED, 1 otherwise.
    """
    from courier.sending import follow, request_body

    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        _fail(f"--args is not JSON: {exc}")
    try:
        body = request_body(command, args, **options)
    except CourierError as exc:
        _fail(exc.message)
    api = Api(url, key, tenant)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    created = api.call("POST", "/commands", json=body, headers=headers)
    if no_wait:
        _print(created)
        return
    click.echo(f"request {created['id']}: {len(created['executions'])} execution(s)", err=True)
    counts = follow(
        lambda: api.call("GET", f"/commands/{created['id']}")["state_counts"] or {}, wait_timeout
    )
    page = api.call("GET", f"/commands/{created['id']}/executions", params={"limit": 1000})
    _print(page["results"])
    if any(state != "SUCCEEDED" for state in counts):
        sys.exit(1)


@main.command()
@click.argument("ident", required=False)
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def status(ident: str | None, url: str, key: str, tenant: str) -> None:
    """Show a request (with per-state counts) or an execution (with its history).

    Without an id, list the latest requests.
    """
    api = Api(url, key, tenant)
    if ident is None:
        page = api.call("GET", "/commands", params={"limit": 20})
        for r in page["results"]:
            click.echo(
                f"{r['id']}  {r['created_on']}  {r['command']:<24} {len(r['devices'])} device(s)"
            )
        return
    response = api.client.get(f"/commands/{ident}")
    if response.status_code == 200:
        _print(response.json())
        return
    execution = api.call("GET", f"/executions/{ident}")
    execution["history"] = api.call("GET", f"/executions/{ident}/history")
    _print(execution)


# --- deferred payloads ---------------------------------------------------------------------


@main.command()
@click.argument("device_id")
@click.argument("command")
@option("--args", "args_json", default=None, help="arguments as JSON (default: the definition's)")
@option("--valid-from", default=None, help="ISO 8601 date-time (default: now)")
@option("--valid-until", default=None, help="ISO 8601 date-time (default: the command's ttl)")
@URL_OPTION
@KEY_OPTION
@TENANT_OPTION
def payloads(
    device_id: str,
    command: str,
    args_json: str | None,
    valid_from: str | None,
    valid_until: str | None,
    url: str,
    key: str,
    tenant: str,
) -> None:
    """Issue deferred payloads of COMMAND for DEVICE_ID, one per line (one per authorization
    id; encrypted with the device's key for a secure command)."""
    body: dict[str, Any] = {"command": command}
    if args_json is not None:
        try:
            body["args"] = json.loads(args_json)
        except json.JSONDecodeError as exc:
            _fail(f"--args is not JSON: {exc}")
    if valid_from is not None:
        body["valid_from"] = valid_from
    if valid_until is not None:
        body["valid_until"] = valid_until
    issued = Api(url, key, tenant).call("POST", f"/devices/{device_id}/payloads", json=body)
    for payload in issued["payloads"]:
        click.echo(payload)


# --- simulate -------------------------------------------------------------------------------


@main.command()
@option("--device", "device_id", default=None, help="device id (the base id with --devices)")
@option(
    "--password",
    default=None,
    envvar="COURIER_DEVICE_PASSWORD",
    show_envvar=True,
    help="MQTT password (the one registration printed)",
)
@option(
    "--devices",
    "count",
    type=int,
    default=1,
    show_default=True,
    help="how many devices: DEVICE-0 ... DEVICE-(N-1) when N > 1",
)
@option(
    "--fail-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="fraction of commands that fail (0-1)",
)
@option(
    "--latency", type=float, default=0.0, show_default=True, help="milliseconds each command takes"
)
@option(
    "--broker",
    default="mqtt://127.0.0.1:1883",
    envvar="COURIER_BROKER",
    show_envvar=True,
    show_default=True,
    help="MQTT broker",
)
@option(
    "--prefix",
    default="courier",
    envvar="COURIER_PREFIX",
    show_envvar=True,
    show_default=True,
    help="topic prefix",
)
@option("--seed", type=int, default=None, help="random seed for failures")
@option(
    "--attached",
    default=None,
    help="make DEVICE a gateway relaying to these simulated attached devices (A,B,C)",
)
@option(
    "--lwm2m",
    "endpoint",
    default=None,
    help="run a simulated LwM2M client with this endpoint name on the EMQX-format topics",
)
@option(
    "--lwm2m-mountpoint",
    default="lwm2m",
    show_default=True,
    help="mount point of the LwM2M topics (as `courier serve --lwm2m-mountpoint`)",
)
def simulate(
    device_id: str | None,
    password: str | None,
    count: int,
    fail_rate: float,
    latency: float,
    broker: str,
    prefix: str,
    seed: int | None,
    attached: str | None,
    endpoint: str | None,
    lwm2m_mountpoint: str,
) -> None:
    """Run simulated devices that answer every command (for demos and load).

    With --attached, DEVICE is a gateway that announces those devices and relays their
    commands to them (simulated behind it). With --lwm2m EP, an LwM2M client (objects /3
    and /5) registers as EP and answers in the EMQX LwM2M gateway's format (with --password,
    it logs in as EP, as a managed broker requires).
    """
    from courier.gateway.simulator import (
        SimulatorConfig,
        device_names,
        run_gateway,
        run_lwm2m,
        run_simulator,
    )

    if endpoint is not None:
        configure_logging("info", "text")
        with contextlib.suppress(KeyboardInterrupt), _runner() as runner:
            runner.run(run_lwm2m(endpoint, broker, lwm2m_mountpoint, password))
        return
    if device_id is None:
        _fail("give --device (or --lwm2m EP)")
        return

    if not 0 <= fail_rate <= 1:
        _fail("--fail-rate must be between 0 and 1")
    if count < 1:
        _fail("--devices must be at least 1")
    configure_logging("info", "text")
    config = SimulatorConfig(
        broker=broker, prefix=prefix, latency_ms=latency, fail_rate=fail_rate, seed=seed
    )
    credentials = [(name, password) for name in device_names(device_id, count)]
    attached_ids = [a.strip() for a in (attached or "").split(",") if a.strip()]
    try:
        with _runner() as runner:
            if attached_ids:
                runner.run(run_gateway(device_id, password, attached_ids, config))
            else:
                runner.run(run_simulator(credentials, config))
    except KeyboardInterrupt:
        pass
    except CourierError as exc:
        _fail(exc.message)


# --- bench ---------------------------------------------------------------------------------


@main.command()
@option(
    "--runs", type=int, default=3, show_default=True, help="runs per figure (the median is shown)"
)
@option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also write every figure to this JSON file",
)
@option("--quick", is_flag=True, help="smaller runs, for a first look (one run each)")
@option(
    "--only",
    default="raw,service,steady,rest,fanout,scale,drain",
    show_default=True,
    help="comma-separated parts to run",
)
@option(
    "--budget",
    type=click.FloatRange(min=0),
    default=570.0,
    show_default=True,
    help="seconds: the offline drain, run last, takes fewer than --runs runs past it (0: none)",
)
def bench(runs: int, json_path: Path | None, quick: bool, only: str, budget: float) -> None:
    """Measure Courier against the raw-MQTT limit of this machine (takes a few minutes)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "bench.py").is_file():
        _fail("the benchmarks live in the repository's benchmarks/ folder: run from a checkout")
    sys.path.insert(0, str(root))
    from benchmarks.bench import Plan
    from benchmarks.bench import main as run_bench

    plan = Plan.quick() if quick else Plan(runs=runs)
    plan.only = frozenset(p.strip() for p in only.split(",") if p.strip())
    plan.budget_s = budget
    run_bench(plan, json_path)

"""Bad input everywhere Courier takes input: every REST body, path id and query parameter, and
every MQTT topic it consumes (replies, presence, attached presence, requests, LwM2M uplinks).

The properties (SPEC sections 6 and 8): a REST answer is a precise 4xx in
application/problem+json, never a 5xx; an MQTT message is rejected, counted in
`courier_mqtt_rejected` and logged with its topic, and the bridge keeps running (a normal
command still round-trips after each one); and nothing changes: every row of every table, and
the file store, are the same before and after.

Inputs that once broke these properties (JSON the store could not keep, offsets past 64 bits,
non-UTF-8 encodings, a self-referencing schema, unbounded LwM2M uplinks) are kept as explicit
cases at the end of the REST part and of the MQTT part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from courier.api import create_app
from courier.bridge import Bridge, BridgeConfig
from courier.bridge.ingress import Ingress
from courier.clock import FakeClock, SystemClock
from courier.core.documents import Setting, SoftwareUpdate, StoredCommand
from courier.gateway import Agent, CommandContext
from courier.ids import new_id
from courier.metrics import Metrics
from courier.mosquitto import MosquittoProcess
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.schemas.fleet import DefinitionIn
from courier.schemas.states import ExecutionState
from courier.service import Service, ServiceConfig
from courier.store import open_store
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport
from tests.helpers import eventually
from tests.integration.bad_input_strategies import (
    BAD_QUERY,
    INT64,
    REPLY_STATES,
    BadBody,
    BadPayload,
    bad_bodies,
    bad_lwm2m_payloads,
    bad_path_ids,
    bad_presences,
    bad_replies,
    bad_topic_ids,
    dumps,
    nested,
    parts,
    undecodable_payloads,
    unknown_ids,
    unpublishable_ids,
)

S = ExecutionState
State = dict[str, list[Any]]
MAX_BODY = 64 * 1024
MAX_FILE = 4096
REST_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MQTT_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def store_state(db: Path, files: Path | None = None) -> State:
    """Every row of every table of the SQLite store (and every file of the file store)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        state: State = {
            table: sorted(conn.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
            for table in tables
        }
    if files is not None:
        state["files/"] = sorted(
            (str(p.relative_to(files)), p.stat().st_size) for p in files.rglob("*") if p.is_file()
        )
    return state


def assert_problem(response: httpx.Response, statuses: int | set[int]) -> None:
    """A precise 4xx: one of `statuses`, as application/problem+json naming the same status."""
    allowed = {statuses} if isinstance(statuses, int) else statuses
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("urn:courier:problem:")
    assert isinstance(body["detail"], str)
    assert body["detail"]


# === REST ====================================================================================


@dataclass
class Rest:
    """The API in-process over SQLite, with one resource of every kind to aim at."""

    client: httpx.AsyncClient
    keys: dict[str, str]
    db: Path
    files: Path
    ids: dict[str, str] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, key: str | None = "admin", **kwargs: Any
    ) -> httpx.Response:
        """`path` may name the seeded resources: {request}, {execution}, {file}, ..."""
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {self.keys[key]}"
        url = path.format(**self.ids)
        return await self.client.request(method, url, headers=headers, **kwargs)

    def state(self) -> State:
        return store_state(self.db, self.files)


async def _chunks(content: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


async def seed(rest: Rest, service: Service) -> None:
    """A definition, devices (a gateway with an attached device), a group, a queued and a sent
    execution, a setting, a file, a software update and a stored command. Made through the
    service: FastAPI prepares each route on its first call, which would cost every test."""
    store, now = service.store, service.clock.now()
    await service.files.links(service.clock)  # the link-signing secret, as Bridge.start makes
    await service.put_definition("acme", DefinitionIn(name="PING"))
    for device in ({"id": "d1"}, {"id": "poller"}, {"id": "gw", "kind": "gateway"}):
        await service.register_device("acme", DeviceIn.model_validate(device))
    await service.register_device("acme", DeviceIn(id="a1", gateway_id="gw"))
    await store.create_group("acme", "g", ["d1"], now, "g1")
    for target, name in (("d1", "execution"), ("poller", "sent_execution")):
        body = CommandRequestIn(devices=[target], command="PING")
        created = await service.create_command("acme", body, "test")
        rest.ids[name] = created.executions[0].id
        rest.ids.setdefault("request", created.request.id)
    assert len(await service.inbox("acme", "poller")) == 1  # now SENT
    setting = Setting(id=new_id(), tenant="acme", name="s1", created_at=now, document={"a": 1})
    rest.ids["setting"] = (await store.put_document(setting)).id
    stored = await service.files.add("acme", "f.bin", "", _chunks(b"abc"), now)
    rest.ids["file"] = stored.id
    update = SoftwareUpdate(
        id=new_id(), tenant="acme", name="fw", created_at=now, version="1", file_id=stored.id
    )
    rest.ids["update"] = (await store.add_software_update(update)).id
    command = StoredCommand(id=new_id(), tenant="acme", name="sc1", created_at=now, command="PING")
    rest.ids["stored"] = (await store.put_document(command)).id


@pytest.fixture
async def rest(tmp_path: Path) -> AsyncIterator[Rest]:
    store = open_store(f"sqlite:///{tmp_path}/rest.db?synchronous=NORMAL")
    await store.open()
    config = ServiceConfig(files_dir=str(tmp_path / "files"), max_file_size=MAX_FILE)
    service = Service(store, config, FakeClock(start=1_795_000_000.0))
    app = create_app(service, Metrics(), None, max_body=MAX_BODY, rate_limit=0)
    keys = {
        name: (await service.create_api_key("acme", scopes, name))[1]
        for name, scopes in (
            ("admin", ["admin"]),
            ("execute", ["read", "execute"]),
            ("read", ["read"]),
        )
    }
    # 500s come back as answers, so a property can say which input caused one.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://courier") as client:
        made = Rest(client, keys, tmp_path / "rest.db", tmp_path / "files")
        await seed(made, service)
        yield made
    await store.close()


JSON_HEADERS = {"content-type": "application/json"}


# --- bodies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyRoute:
    """A route taking a JSON body: a body it accepts, and the kind of each field."""

    method: str
    path: str
    key: str
    valid: Mapping[str, Any]
    fields: Mapping[str, str]


T = "/v1/tenants/acme"
DEVICE_FIELDS = {
    "id": "id",
    "kind": "enum",
    "gateway_id": "id?",
    "protocol": "enum",
    "labels": "dict",
    "timezone": "str?",
    "delivery_policy": "enum",
    "authorization_ids": "auth_ids",
}
COMMAND_FIELDS = {
    "command_type": "enum",
    "devices": "ids",
    "groups": "ids",
    "filter": "model?",
    "device_type": "enum",
    "command": "str",
    "args": "dict",
    "schedule": "enum",
    "schedule_args": "model?",
    "ttl": "int?",
    "timeout": "float?",
    "ack_timeout": "float?",
    "retry": "model",
    "priority": "int",
    "rollout": "model?",
}
DEFINITION_FIELDS = {
    "name": "str",
    "description": "str",
    "schema": "dict",
    "internal": "bool",
    "secure": "bool",
    "timeout": "float?",
    "ttl": "int?",
    "max_timeout": "float?",
    "max_ttl": "int?",
}
GATEWAY_COMMAND_FIELDS = {
    "command_type": "str",
    "payload": "dict",
    "schedule": "model?",
    "expiry": "int?",
    "setting_id": "str?",
    "command_id": "str?",
    "software_update_id": "str?",
    "attached_device_ids": "ids",
    "retry_options": "model?",
    "type": "str?",
    "endpoint": "str?",
    "file_id": "str?",
    "filepath": "str?",
}
SETTING = {"name": "s2", "document": {"b": 2}}
COMMAND = {"devices": ["d1"], "command": "PING"}
COMMAND_ROUTE = BodyRoute("POST", f"{T}/commands", "execute", COMMAND, COMMAND_FIELDS)
BODY_ROUTES = [
    BodyRoute("PATCH", T, "admin", {"timezone": "UTC"}, {"timezone": "str?"}),
    BodyRoute("POST", f"{T}/devices", "admin", {"id": "new-device"}, DEVICE_FIELDS),
    BodyRoute(
        "PATCH",
        f"{T}/devices/d1",
        "admin",
        {"labels": {"site": "north"}},
        {
            "labels": "dict?",
            "timezone": "str?",
            "delivery_policy": "enum?",
            "authorization_ids": "auth_ids?",
        },
    ),
    BodyRoute(
        "POST",
        f"{T}/groups",
        "admin",
        {"name": "new"},
        {"name": "str", "id": "id?", "devices": "ids"},
    ),
    BodyRoute("PATCH", f"{T}/groups/g1", "admin", {"name": "renamed"}, {"name": "str"}),
    COMMAND_ROUTE,
    BodyRoute(
        "POST", f"{T}/commands/{{request}}/cancel", "execute", {"reason": "r"}, {"reason": "str?"}
    ),
    BodyRoute(
        "PUT",
        f"{T}/executions/{{sent_execution}}/state",
        "execute",
        {"state": "ACKNOWLEDGED"},
        {"state": "enum", "reason": "str?", "output": "dict?", "progress": "int?"},
    ),
    BodyRoute(
        "POST",
        f"{T}/executions/{{execution}}/cancel",
        "execute",
        {"reason": "r"},
        {"reason": "str?"},
    ),
    BodyRoute("POST", f"{T}/definitions", "admin", {"name": "NEWDEF"}, DEFINITION_FIELDS),
    BodyRoute("PUT", f"{T}/definitions/PING", "admin", {"name": "PING"}, DEFINITION_FIELDS),
    BodyRoute(
        "POST",
        f"{T}/apikeys",
        "admin",
        {"scopes": ["read"]},
        {"scopes": "list", "name": "str", "expires_in": "int?"},
    ),
    BodyRoute(
        "POST",
        f"{T}/software_updates",
        "admin",
        {"name": "fw", "version": "2", "file_id": "f"},
        {"name": "str", "version": "str", "file_id": "str", "target": "str", "description": "str"},
    ),
    BodyRoute("POST", f"{T}/settings", "admin", SETTING, {"name": "str", "document": "dict"}),
    BodyRoute(
        "PUT", f"{T}/settings/{{setting}}", "admin", SETTING, {"name": "str", "document": "dict"}
    ),
    BodyRoute(
        "POST",
        f"{T}/stored_commands",
        "admin",
        {"name": "sc2", "command": "PING"},
        {"name": "str", "command": "str", "args": "dict", "timeout": "float?", "ttl": "int?"},
    ),
    BodyRoute(
        "POST",
        f"{T}/devices/gw/gateway_commands",
        "execute",
        {"command_type": "PING"},
        GATEWAY_COMMAND_FIELDS,
    ),
    BodyRoute(
        "POST",
        f"{T}/devices/d1/payloads",
        "execute",
        {"command": "PING"},
        {"command": "str", "args": "dict?", "valid_from": "datetime?", "valid_until": "datetime?"},
    ),
    BodyRoute("POST", f"{T}/service_users", "admin", {"username": "svc"}, {"username": "id"}),
]


def rest_bodies(route: BodyRoute) -> st.SearchStrategy[tuple[BodyRoute, BadBody]]:
    return bad_bodies(route.valid, route.fields, MAX_BODY).map(lambda bad: (route, bad))


@REST_SETTINGS
@given(case=st.sampled_from(BODY_ROUTES).flatmap(rest_bodies))
async def test_bad_bodies_answer_a_precise_4xx_and_change_nothing(
    rest: Rest, case: tuple[BodyRoute, BadBody]
) -> None:
    """Not JSON (400), not UTF-8 (400), too deep to parse (400), not an object, an unknown
    field or a wrongly typed one (422), too large whether announced or streamed (413)."""
    route, bad = case
    event(bad.what.split()[0])
    before = rest.state()
    content = _chunks(bad.content) if bad.chunked else bad.content
    response = await rest.call(
        route.method, route.path, route.key, content=content, headers=JSON_HEADERS
    )
    assert_problem(response, bad.status)
    assert rest.state() == before


# --- ids in paths ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathRoute:
    """A route with `{id}` where the bad id goes; `slot` says what the id names."""

    method: str
    path: str
    key: str | None
    slot: str  # tenant | device | resource | link | name
    body: Mapping[str, Any] | None = None

    def expected(self, bad_id: str) -> set[int]:
        if "/" in bad_id:  # decoded, it splits the path: another route or none
            return {404, 405, 422}
        return {"tenant": {422}, "device": {422}, "name": {422}, "resource": {404}, "link": {403}}[
            self.slot
        ]


PATH_ROUTES = [
    PathRoute("GET", "/v1/tenants/{id}", "read", "tenant"),
    PathRoute("GET", "/v1/tenants/{id}/devices", "read", "tenant"),
    PathRoute("POST", "/v1/tenants/{id}/commands", "execute", "tenant", COMMAND),
    PathRoute("GET", "/v1/tenants/{id}/executions/{execution}", "read", "tenant"),
    PathRoute("GET", f"{T}/devices/{{id}}", "read", "device"),
    PathRoute("PATCH", f"{T}/devices/{{id}}", "admin", "device", {"labels": {}}),
    PathRoute("DELETE", f"{T}/devices/{{id}}", "admin", "device"),
    PathRoute("POST", f"{T}/devices/{{id}}/password", "admin", "device"),
    PathRoute("POST", f"{T}/devices/{{id}}/payload_key", "admin", "device"),
    PathRoute("GET", f"{T}/devices/{{id}}/executions", "read", "device"),
    PathRoute("GET", f"{T}/devices/{{id}}/inbox", "execute", "device"),
    PathRoute("POST", f"{T}/devices/{{id}}/payloads", "execute", "device", {"command": "PING"}),
    PathRoute(
        "POST",
        f"{T}/devices/{{id}}/gateway_commands",
        "execute",
        "device",
        {"command_type": "PING"},
    ),
    PathRoute("PUT", f"{T}/groups/g1/devices/{{id}}", "admin", "device"),
    PathRoute("DELETE", f"{T}/groups/g1/devices/{{id}}", "admin", "device"),
    PathRoute("GET", f"{T}/groups/{{id}}", "read", "resource"),
    PathRoute("PATCH", f"{T}/groups/{{id}}", "admin", "resource", {"name": "x"}),
    PathRoute("DELETE", f"{T}/groups/{{id}}", "admin", "resource"),
    PathRoute("GET", f"{T}/groups/{{id}}/devices", "read", "resource"),
    PathRoute("PUT", f"{T}/groups/{{id}}/devices/d1", "admin", "resource"),
    PathRoute("GET", f"{T}/commands/{{id}}", "read", "resource"),
    PathRoute("POST", f"{T}/commands/{{id}}/cancel", "execute", "resource"),
    PathRoute("GET", f"{T}/commands/{{id}}/executions", "read", "resource"),
    PathRoute("GET", f"{T}/executions/{{id}}", "read", "resource"),
    PathRoute("GET", f"{T}/executions/{{id}}/history", "read", "resource"),
    PathRoute("PUT", f"{T}/executions/{{id}}/state", "execute", "resource", {"state": "SUCCEEDED"}),
    PathRoute("POST", f"{T}/executions/{{id}}/cancel", "execute", "resource"),
    PathRoute("POST", f"{T}/executions/{{id}}/retry", "execute", "resource"),
    PathRoute("GET", f"{T}/definitions/{{id}}", "read", "resource"),
    PathRoute("DELETE", f"{T}/definitions/{{id}}", "admin", "resource"),
    # The body names another definition, so even an id that is a valid name is refused.
    PathRoute("PUT", f"{T}/definitions/{{id}}", "admin", "name", {"name": "PING"}),
    PathRoute("DELETE", f"{T}/apikeys/{{id}}", "admin", "resource"),
    PathRoute("GET", f"{T}/files/{{id}}", "read", "resource"),
    PathRoute("GET", f"{T}/files/{{id}}/content", "read", "resource"),
    PathRoute("DELETE", f"{T}/files/{{id}}", "admin", "resource"),
    PathRoute("GET", f"{T}/software_updates/{{id}}", "read", "resource"),
    PathRoute("DELETE", f"{T}/software_updates/{{id}}", "admin", "resource"),
    PathRoute("GET", f"{T}/settings/{{id}}", "read", "resource"),
    PathRoute("PUT", f"{T}/settings/{{id}}", "admin", "resource", SETTING),
    PathRoute("DELETE", f"{T}/settings/{{id}}", "admin", "resource"),
    PathRoute("GET", f"{T}/stored_commands/{{id}}", "read", "resource"),
    PathRoute("DELETE", f"{T}/stored_commands/{{id}}", "admin", "resource"),
    PathRoute("DELETE", f"{T}/service_users/{{id}}", "admin", "resource"),
    PathRoute("GET", "/v1/files/{id}", None, "link"),
    PathRoute("PUT", "/v1/uploads/{id}", None, "link"),
]


def in_path(value: str) -> str:
    """One path segment: everything escaped, dots too (a client would resolve . and ..)."""
    return quote(value, safe="").replace(".", "%2E")


@REST_SETTINGS
@given(route=st.sampled_from(PATH_ROUTES), bad_id=bad_path_ids())
async def test_bad_ids_in_paths_answer_a_precise_4xx_and_change_nothing(
    rest: Rest, route: PathRoute, bad_id: str
) -> None:
    """An id with / + # $ : NUL or non-ASCII, or too long: 422 where it must be a tenant or
    device id, 404 where it names a resource, 403 as a signed link."""
    event(route.slot + (" split by /" if "/" in bad_id else ""))
    before = rest.state()
    response = await rest.call(
        route.method,
        route.path.format(id=in_path(bad_id), **rest.ids),
        route.key,
        content=None if route.body is None else dumps(dict(route.body)),
        headers=JSON_HEADERS,
    )
    assert_problem(response, route.expected(bad_id))
    assert rest.state() == before


# --- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryRoute:
    """A route with query parameters and the kind of each."""

    path: str
    key: str
    params: Mapping[str, str]
    method: str = "GET"
    content: bytes | None = None


PAGE = {"limit": "limit", "offset": "offset"}
QUERY_ROUTES = [
    QueryRoute(f"{T}/devices", "read", {**PAGE, "online": "bool"}),
    QueryRoute(
        f"{T}/devices/d1/executions",
        "read",
        {**PAGE, "state": "states", "since": "time", "until": "time"},
    ),
    QueryRoute(
        f"{T}/commands", "read", {**PAGE, "devices": "devices", "since": "time", "until": "time"}
    ),
    QueryRoute(
        f"{T}/commands/{{request}}/executions",
        "read",
        {**PAGE, "device": "devices", "state": "states"},
    ),
    QueryRoute(
        f"{T}/executions",
        "read",
        {
            **PAGE,
            "device_ids": "devices",
            "state": "states",
            "since": "time",
            "until": "time",
            "exclude_internal_commands": "bool",
        },
    ),
    QueryRoute(f"{T}/groups", "read", PAGE),
    QueryRoute(f"{T}/groups/g1/devices", "read", PAGE),
    QueryRoute(f"{T}/definitions", "read", {"builtin": "bool"}),
    QueryRoute(f"{T}/software_updates", "read", PAGE),
    QueryRoute(f"{T}/settings", "read", PAGE),
    QueryRoute(f"{T}/stored_commands", "read", PAGE),
    QueryRoute(f"{T}/files", "read", PAGE),
    QueryRoute(f"{T}/service_users", "admin", PAGE),
    QueryRoute(f"{T}/files", "admin", {"name": "name"}, method="POST", content=b"abc"),
]


@st.composite
def bad_queries(draw: st.DrawFn, route: QueryRoute) -> tuple[QueryRoute, dict[str, str]]:
    """Some of the route's parameters, each with a value it refuses."""
    names = draw(st.sets(st.sampled_from(sorted(route.params)), min_size=1))
    return route, {name: draw(BAD_QUERY[route.params[name]]) for name in sorted(names)}


@REST_SETTINGS
@given(case=st.sampled_from(QUERY_ROUTES).flatmap(bad_queries))
async def test_bad_queries_answer_422_and_change_nothing(
    rest: Rest, case: tuple[QueryRoute, dict[str, str]]
) -> None:
    """Page bounds, unknown states, times without a zone or no time at all, invalid device ids
    in lists, non-booleans, a file name empty or too long: 422 with the reason."""
    route, params = case
    before = rest.state()
    response = await rest.call(
        route.method, route.path, route.key, params=params, content=route.content
    )
    assert_problem(response, 422)
    assert rest.state() == before


@REST_SETTINGS
@given(
    key=st.just("")
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=256, max_size=300)
)
async def test_bad_idempotency_keys_answer_422_and_change_nothing(rest: Rest, key: str) -> None:
    """An Idempotency-Key empty or over 255 characters is refused."""
    before = rest.state()
    headers = {**JSON_HEADERS, "Idempotency-Key": key}
    response = await rest.call("POST", f"{T}/commands", "execute", json=COMMAND, headers=headers)
    assert_problem(response, 422)
    assert rest.state() == before


@settings(REST_SETTINGS, max_examples=10)
@given(size=st.integers(MAX_FILE + 1, 4 * MAX_FILE), chunked=st.booleans())
async def test_oversized_uploads_answer_413_and_leave_nothing(
    rest: Rest, size: int, chunked: bool
) -> None:
    """A file over the store's limit is refused whether its size is announced or it streams,
    and no file or record is left behind."""
    before = rest.state()
    content = _chunks(b"x" * size, 1024) if chunked else b"x" * size
    response = await rest.call("POST", f"{T}/files", params={"name": "big"}, content=content)
    assert_problem(response, 413)
    assert rest.state() == before


# --- found: answers that are not a precise 4xx ------------------------------------------------

UNWRITABLE = (
    "Python's JSON parser takes values the store's encoder (orjson) cannot write: integers "
    "beyond 64 bits, lone surrogates, nesting of 254+ levels; free-form JSON fields pass them "
    "through and sqlite_rows.dumps raises TypeError: 500"
)
BIG, SURROGATE, DEEP = str(2**64), '"\\ud800"', nested(300)
COMMANDS = ("POST", f"{T}/commands", "execute")
STATE = ("PUT", f"{T}/executions/{{sent_execution}}/state", "execute")


def _bug(case_id: str, route: tuple[str, str, str], body: str, reason: str = UNWRITABLE) -> Any:
    return pytest.param(*route, body, id=case_id)


def _command(args: str) -> str:
    return f'{{"devices": ["d1"], "command": "PING", "args": {args}}}'


def _filter(labels: str) -> str:
    return f'{{"command_type": "DYNAMIC", "command": "PING", "filter": {{"labels": {labels}}}}}'


STORE_BUGS = [
    _bug("commands-args-nested-300", COMMANDS, _command(DEEP)),
    _bug("commands-args-int-2**64", COMMANDS, _command(f'{{"n": {BIG}}}')),
    _bug("commands-args-lone-surrogate", COMMANDS, _command(f'{{"s": {SURROGATE}}}')),
    _bug(
        "gateway-command-payload-int-2**64",
        ("POST", f"{T}/devices/gw/gateway_commands", "execute"),
        f'{{"command_type": "PING", "payload": {{"n": {BIG}}}}}',
    ),
    _bug(
        "stored-command-args-int-2**64",
        ("POST", f"{T}/stored_commands", "admin"),
        f'{{"name": "sc2", "command": "PING", "args": {{"n": {BIG}}}}}',
    ),
    _bug(
        "setting-document-nested-300",
        ("POST", f"{T}/settings", "admin"),
        f'{{"name": "s2", "document": {DEEP}}}',
    ),
    _bug(
        "setting-document-lone-surrogate",
        ("PUT", f"{T}/settings/{{setting}}", "admin"),
        f'{{"name": "s1", "document": {{"s": {SURROGATE}}}}}',
    ),
    _bug(
        "definition-schema-int-2**64",
        ("POST", f"{T}/definitions", "admin"),
        f'{{"name": "BIG", "schema": {{"type": "object", "maxProperties": {BIG}}}}}',
    ),
    _bug(
        "device-label-key-lone-surrogate",
        ("POST", f"{T}/devices", "admin"),
        f'{{"id": "d9", "labels": {{{SURROGATE}: "x"}}}}',
    ),
    _bug(
        "device-patch-label-key-lone-surrogate",
        ("PATCH", f"{T}/devices/d1", "admin"),
        f'{{"labels": {{{SURROGATE}: "x"}}}}',
    ),
    _bug("state-output-int-2**64", STATE, f'{{"state": "ACKNOWLEDGED", "output": {{"n": {BIG}}}}}'),
    _bug("state-output-nested-300", STATE, f'{{"state": "ACKNOWLEDGED", "output": {DEEP}}}'),
    _bug(
        "filter-label-value-lone-surrogate",
        COMMANDS,
        _filter(f'{{"a": {SURROGATE}}}'),
        "a DYNAMIC filter's label value with a lone surrogate reaches sqlite3 as a query "
        "parameter: UnicodeEncodeError in SqliteTx.find_devices, 500",
    ),
    _bug(
        "filter-label-key-nul",
        COMMANDS,
        _filter('{"\\u0000": "x"}'),
        'a DYNAMIC filter\'s label key goes into a SQLite JSON path ($."key"); with a NUL the '
        "path is malformed: StoreError 'JSON path error', 503",
    ),
    _bug(
        "definition-schema-nested-200",
        ("POST", f"{T}/definitions", "admin"),
        '{"name": "DEEP", "schema": ' + nested(200, "{}").replace('"a"', '"not"') + "}",
        "jsonschema's check_schema recurses once per level: a schema nested ~140+ levels deep "
        "(under the body limit) raises RecursionError in DefinitionIn._valid_schema: 500",
    ),
    _bug(
        "commands-args-nan",
        COMMANDS,
        _command('{"x": NaN}'),
        "Python's JSON parser takes NaN, Infinity and 1e400, which are not JSON: the request "
        "is created (201) and the store writes the value as null",
    ),
]


@pytest.mark.parametrize(("method", "path", "key", "body"), STORE_BUGS)
async def test_json_that_parses_but_cannot_be_kept_is_refused(
    rest: Rest, method: str, path: str, key: str, body: str
) -> None:
    """JSON that parses but that the store (or the schema check) cannot handle is refused
    with a 4xx: no crash, no value silently changed."""
    before = rest.state()
    response = await rest.call(method, path, key, content=body.encode(), headers=JSON_HEADERS)
    assert_problem(response, {400, 422})
    assert rest.state() == before


async def test_a_self_referencing_schema_does_not_break_its_commands(rest: Rest) -> None:
    """A command whose definition's schema refers to itself is refused, not a crash."""
    body = {"name": "LOOP", "schema": {"$ref": "#"}}
    created = await rest.call("POST", f"{T}/definitions", json=body)
    if created.status_code != 201:
        assert_problem(created, 422)  # refusing the schema itself is a fix too
        return
    before = rest.state()
    response = await rest.call(
        "POST", f"{T}/commands", "execute", json={"devices": ["d1"], "command": "LOOP"}
    )
    assert_problem(response, 422)
    assert rest.state() == before


@pytest.mark.parametrize(
    "route",
    [
        pytest.param(r, id=r.path.removeprefix(T + "/"))
        for r in QUERY_ROUTES
        if "offset" in r.params
    ],
)
async def test_an_offset_past_64_bits_is_422(rest: Rest, route: QueryRoute) -> None:
    """Page offsets SQLite cannot take are refused like negative ones."""
    response = await rest.call("GET", route.path, route.key, params={"offset": str(2**63)})
    assert_problem(response, 422)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
async def test_a_body_that_is_not_utf8_is_400_whatever_its_encoding(
    rest: Rest, encoding: str
) -> None:
    """JSON bodies are UTF-8 (RFC 8259 8.1); any other encoding is refused."""
    before = rest.state()
    body = '{"id": "wide"}'.encode(encoding)
    response = await rest.call("POST", f"{T}/devices", content=body, headers=JSON_HEADERS)
    assert_problem(response, 400)
    assert rest.state() == before


async def test_an_id_ending_in_a_slash_is_a_4xx(rest: Rest) -> None:
    """`d1/` is not a device id: the answer is a 4xx, not a redirect to d1."""
    response = await rest.call("GET", f"{T}/devices/{in_path('d1/')}", "read")
    assert_problem(response, {404, 422})


# === MQTT ====================================================================================


@dataclass
class Rig:
    """Courier's bridge on the real Mosquitto (SQLite, MQTT requests and LwM2M on), a raw MQTT
    client to publish anything, and an agent to prove commands still flow."""

    bridge: Bridge
    service: Service
    metrics: Metrics
    topics: Topics
    mount: str
    client: GmqttTransport
    db: Path
    prefix: str
    answers: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def rejected(self) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        for metric in self.metrics.rejected.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["topic"], sample.labels["reason"]] += int(sample.value)
        return counts

    def state(self) -> State:
        return store_state(self.db)

    async def send(self, device: str, **body: Any) -> str:
        created = await self.service.create_command(
            "acme",
            CommandRequestIn.model_validate({"devices": [device], "command": "PING", **body}),
            "test",
        )
        return created.executions[0].id

    async def round_trip(self) -> None:
        """A normal command to a live device still ends SUCCEEDED."""
        execution = await self.send(self.id("live"))

        async def succeeded() -> bool:
            found = await self.service.store.get_execution("acme", execution)
            return found.state is S.SUCCEEDED

        await eventually(succeeded, timeout=10, what="a normal command to round-trip")


@pytest.fixture
async def rig(broker: MosquittoProcess, prefix: str, tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"sqlite:///{tmp_path}/mqtt.db?synchronous=NORMAL")
    await store.open()
    metrics = Metrics()
    clock = SystemClock()
    config = BridgeConfig(prefix=prefix, sweep_interval=0.2, lwm2m_mountpoint=f"{prefix}-lwm2m")
    transport = GmqttTransport(
        ConnectOptions.from_url(broker.url, client_id=f"courier-{prefix}", reconnect_delay=0.2)
    )
    bridge = Bridge(store, transport, config, clock, metrics)
    service = Service(store, ServiceConfig(files_dir=str(tmp_path / "files")), clock)
    bridge.ingress = Ingress(service, metrics, config.max_payload)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    client = GmqttTransport(
        ConnectOptions.from_url(broker.url, client_id=f"{prefix}-raw", clean_start=True)
    )
    made = Rig(
        bridge,
        service,
        metrics,
        Topics(prefix),
        config.lwm2m_mountpoint,
        client,
        tmp_path / "mqtt.db",
        prefix,
    )

    async def answer(message: Message) -> None:
        made.answers[message.correlation_data or b""] = orjson.loads(message.payload)

    client.on_message = answer
    agent = Agent(made.id("live"), broker=broker.url, prefix=prefix)

    @agent.default_handler
    async def run(ctx: CommandContext) -> dict[str, bool]:
        return {"ok": True}

    try:
        await eventually(lambda: bridge.ready, what="the bridge connected")
        await client.connect()
        await client.subscribe([f"{prefix}/answers"])
        await seed_mqtt(made)
        await agent.start()
        await made.round_trip()
        yield made
    finally:
        await agent.stop()
        await client.disconnect()
        stop.set()
        await task
        await store.close()


async def seed_mqtt(rig: Rig) -> None:
    """`silent`: online, one execution SENT and never answered (ack timeout an hour away);
    `idle`: offline, one execution QUEUED; a gateway `gw` with `att` attached; an LwM2M
    endpoint `meter`, offline."""
    service = rig.service
    for name, fields in (
        ("silent", {}),
        ("idle", {}),
        ("live", {}),
        ("gw", {"kind": "gateway"}),
        ("meter", {"protocol": "lwm2m"}),
    ):
        await service.register_device("acme", DeviceIn(id=rig.id(name), **fields))
    await service.register_device("acme", DeviceIn(id=rig.id("att"), gateway_id=rig.id("gw")))
    rig.ids["queued"] = await rig.send(rig.id("idle"), ttl=86400)
    rig.client.publish(rig.topics.presence(rig.id("silent")), dumps({"online": True}))
    rig.ids["sent"] = await rig.send(rig.id("silent"), ttl=86400, ack_timeout=3600)

    async def sent() -> bool:
        found = await service.store.get_execution("acme", rig.ids["sent"])
        return found.state is S.SENT

    await eventually(sent, what="the silent device's command sent")


@dataclass(frozen=True)
class Case:
    """One MQTT message and how it must be rejected: under `kind` with one of `reasons`, and
    logged with `logged` (an attribute of the log record and its value)."""

    topic: str
    payload: BadPayload
    kind: str
    logged: tuple[str, str] = ("topic", "")
    answer: int | None = None  # the status answered on the response topic (requests)

    def __repr__(self) -> str:
        return f"Case({self.topic!r}, {self.payload!r}, {self.kind})"


def _case(topic: str, payload: BadPayload, kind: str, answer: int | None = None) -> Case:
    return Case(topic, payload, kind, ("topic", topic), answer)


def _valid(what: str, body: Any, *reasons: str) -> BadPayload:
    return BadPayload(what, parts(dumps(body)), frozenset(reasons))


async def expect_rejection(
    rig: Rig,
    caplog: pytest.LogCaptureFixture,
    case: Case,
    inject: bool = False,
    timeout: float = 5.0,  # noqa: ASYNC109 - a polling deadline
) -> None:
    """Publish (or hand the bridge) the message; it is counted once under its kind and reason,
    logged, answered if it was a request, and changes nothing; then a command round-trips."""
    if currently_in_test_context():
        event(f"{case.kind}: {case.payload.what}")
    caplog.set_level(logging.WARNING)
    counted = rig.rejected()
    logs = len(caplog.records)
    before = rig.state()
    token = f"c{sum(counted.values())}-{len(rig.answers)}".encode()
    if inject:
        await rig.bridge.inbound.handle(Message(case.topic, case.payload.payload))
    else:
        rig.client.publish(
            case.topic,
            case.payload.payload,
            response_topic=f"{rig.prefix}/answers",
            correlation_data=token,
        )

    def moved() -> bool:
        return rig.rejected().total() > counted.total()

    await eventually(moved, timeout=timeout, what=f"the rejection of {case!r}")
    delta = rig.rejected() - counted
    assert len(delta) == 1, delta
    [((kind, reason), count)] = delta.items()
    assert (kind, count) == (case.kind, 1), delta
    assert reason in case.payload.reasons, (reason, case)
    name, value = case.logged
    assert any(
        getattr(r, name, None) == value and r.levelno == logging.WARNING
        for r in caplog.records[logs:]
    ), [r.getMessage() for r in caplog.records[logs:]]
    if case.answer is not None:
        await eventually(lambda: token in rig.answers, what="the answer on the response topic")
        answered = rig.answers[token]
        assert answered["status"] == case.answer, answered
        assert answered["type"] == f"urn:courier:problem:{reason}", answered
        assert answered["detail"]
    assert rig.state() == before
    await rig.round_trip()


@st.composite
def reply_cases(draw: st.DrawFn, rig: Rig) -> Case:
    """Bad payloads on the SENT execution's own reply topic; valid ones for an unknown
    execution, another device's execution, or from an invalid device id."""
    topics, valid = rig.topics, {"state": draw(st.sampled_from(REPLY_STATES))}
    silent, sent = rig.id("silent"), rig.ids["sent"]
    kinds = ["payload", "payload", "payload", "unknown", "foreign", "bad_device"]
    kind = draw(st.sampled_from(kinds))
    if kind == "payload":
        bad = draw(bad_replies(rig.bridge.config.max_payload))
        return _case(topics.reply(silent, sent), bad, "reply")
    if kind == "unknown":
        execution = draw(st.text(st.characters(categories=("L", "N")), min_size=1, max_size=40))
        bad = _valid("unknown execution", valid, "unknown_execution")
        return _case(topics.reply(silent, execution), bad, "reply")
    if kind == "foreign":
        bad = _valid("another device's execution", valid, "foreign_execution")
        return _case(topics.reply(silent, rig.ids["queued"]), bad, "reply")
    bad = _valid("invalid device id", valid, "bad_topic")
    return _case(topics.reply(draw(bad_topic_ids()), sent), bad, "unknown")


@MQTT_SETTINGS
@given(data=st.data())
async def test_bad_replies_are_rejected_counted_and_change_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    """Reply topic: bad JSON, wrong types, oversized, not UTF-8, unknown or foreign
    executions, invalid device ids."""
    await expect_rejection(rig, caplog, data.draw(reply_cases(rig)))


@st.composite
def presence_cases(draw: st.DrawFn, rig: Rig) -> Case:
    """Bad payloads on a known device's presence and on a known gateway's attached device's;
    valid ones for unknown devices, non-gateways, devices attached elsewhere, invalid ids."""
    topics, max_payload = rig.topics, rig.bridge.config.max_payload
    online = {"online": draw(st.booleans())}
    gw, att, idle = rig.id("gw"), rig.id("att"), rig.id("idle")
    kind = draw(
        st.sampled_from(
            [
                "payload",
                "payload",
                "attached_payload",
                "attached_payload",
                "unknown",
                "bad_device",
                "unknown_gateway",
                "not_gateway",
                "not_attached",
                "bad_attached",
            ]
        )
    )
    if kind == "payload":
        return _case(topics.presence(idle), draw(bad_presences(max_payload)), "presence")
    if kind == "attached_payload":
        bad = draw(bad_presences(max_payload))
        return _case(topics.attached_presence(gw, att), bad, "attached_presence")
    if kind == "unknown":
        bad = _valid("unknown device", online, "unknown_device")
        return _case(topics.presence(draw(unknown_ids(rig.prefix))), bad, "presence")
    if kind == "bad_device":
        bad = _valid("invalid device id", online, "bad_topic")
        return _case(topics.presence(draw(bad_topic_ids())), bad, "unknown")
    if kind == "unknown_gateway":
        bad = _valid("unknown gateway", online, "unknown_gateway")
        gateway = draw(unknown_ids(rig.prefix))
        return _case(topics.attached_presence(gateway, att), bad, "attached_presence")
    if kind == "not_gateway":
        bad = _valid("not a gateway", online, "not_a_gateway")
        return _case(topics.attached_presence(idle, att), bad, "attached_presence")
    if kind == "not_attached":
        bad = _valid("not attached", online, "not_an_attached_device")
        return _case(topics.attached_presence(gw, idle), bad, "attached_presence")
    bad, bad_id = _valid("invalid attached id", online, "bad_topic"), draw(bad_topic_ids())
    ids = draw(st.sampled_from([(gw, bad_id), (bad_id, att)]))
    return _case(topics.attached_presence(*ids), bad, "unknown")


@MQTT_SETTINGS
@given(data=st.data())
async def test_bad_presence_is_rejected_counted_and_changes_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    """Presence and attached-presence topics."""
    await expect_rejection(rig, caplog, data.draw(presence_cases(rig)))


@st.composite
def request_cases(draw: st.DrawFn, rig: Rig) -> Case:
    """Bad command requests on the tenant's requests topic (answered 422 on the response
    topic), a valid one for unknown devices or an unknown tenant, an invalid tenant id."""
    topic = rig.topics.requests("acme")
    kinds = [
        "body",
        "body",
        "undecodable",
        "undecodable",
        "unknown_devices",
        "tenant",
        "bad_tenant",
    ]
    kind = draw(st.sampled_from(kinds))
    if kind == "body":
        refused = draw(bad_bodies(COMMAND_ROUTE.valid, COMMAND_ROUTE.fields))
        bad = BadPayload(refused.what, refused.parts, frozenset({"invalid-input"}))
        return Case(topic, bad, "requests", ("tenant", "acme"), 422)
    if kind == "undecodable":
        undecodable = draw(undecodable_payloads(rig.bridge.config.max_payload))
        bad = BadPayload(undecodable.what, undecodable.parts, frozenset({"invalid-input"}))
        return Case(topic, bad, "requests", ("tenant", "acme"), 422)
    if kind == "unknown_devices":
        devices = draw(st.lists(unknown_ids(rig.prefix), min_size=1, max_size=3, unique=True))
        bad = _valid("unknown devices", {"devices": devices, "command": "PING"}, "unknown-devices")
        return Case(topic, bad, "requests", ("tenant", "acme"), 422)
    if kind == "tenant":
        tenant = draw(unknown_ids(rig.prefix))
        bad = _valid("unknown tenant", COMMAND, "not-found")
        return Case(rig.topics.requests(tenant), bad, "requests", ("tenant", tenant), 404)
    bad = _valid("invalid tenant id", COMMAND, "bad_topic")
    return _case(rig.topics.requests(draw(bad_topic_ids())), bad, "unknown")


@MQTT_SETTINGS
@given(data=st.data())
async def test_bad_requests_over_mqtt_are_answered_counted_and_change_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    """Requests topic (ingress)."""
    await expect_rejection(rig, caplog, data.draw(request_cases(rig)))


@st.composite
def lwm2m_cases(draw: st.DrawFn, rig: Rig) -> Case:
    """LwM2M uplinks: what is not a JSON object on any of them; on `resp`, an answer to no
    request in flight; on `notify`, a notification of nothing observed; anything from an
    unknown or non-LwM2M endpoint or an invalid endpoint id."""
    mount, meter = rig.mount, rig.id("meter")
    uplink = draw(st.sampled_from(["resp", "notify", "register", "update"]))
    body = draw(st.dictionaries(st.text(max_size=8), INT64 | st.text(max_size=8), max_size=4))
    kinds = ["payload", "payload", "resp", "notify", "unknown", "native", "bad_endpoint"]
    kind = draw(st.sampled_from(kinds))
    if kind == "payload":
        return _case(f"{mount}/{meter}/up/{uplink}", draw(bad_lwm2m_payloads()), "lwm2m")
    if kind == "resp":
        bad = _valid("no request in flight", {**body, "reqID": draw(INT64)}, "unknown_execution")
        return _case(f"{mount}/{meter}/up/resp", bad, "lwm2m")
    if kind == "notify":
        bad = _valid("nothing observed", {**body, "msgType": "notify"}, "invalid", "not_observed")
        return _case(f"{mount}/{meter}/up/notify", bad, "lwm2m")
    if kind == "bad_endpoint":
        bad = _valid("invalid endpoint id", body, "bad_topic")
        return _case(f"{mount}/{draw(bad_topic_ids())}/up/{uplink}", bad, "lwm2m")
    endpoint = rig.id("idle") if kind == "native" else draw(unknown_ids(rig.prefix))
    bad = _valid(f"{kind} endpoint", body, "unknown_device")
    return _case(f"{mount}/{endpoint}/up/{uplink}", bad, "lwm2m")


@MQTT_SETTINGS
@given(data=st.data())
async def test_bad_lwm2m_uplinks_are_rejected_counted_and_change_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    """LwM2M resp, notify, register and update topics."""
    await expect_rejection(rig, caplog, data.draw(lwm2m_cases(rig)))


@st.composite
def unpublishable_cases(draw: st.DrawFn, rig: Rig) -> Case:
    """An id with + # or NUL (and maybe /) in a level Courier reads an id from, on every topic
    it consumes, with an otherwise valid payload."""
    bad, topics = draw(unpublishable_ids()), rig.topics
    gw, att, sent = rig.id("gw"), rig.id("att"), rig.ids["sent"]
    online = _valid("id MQTT cannot carry", {"online": True}, "bad_topic")
    reply = _valid("id MQTT cannot carry", {"state": "SUCCEEDED"}, "bad_topic")
    return draw(
        st.sampled_from(
            [
                _case(topics.reply(bad, sent), reply, "unknown"),
                _case(topics.presence(bad), online, "unknown"),
                _case(topics.attached_presence(bad, att), online, "unknown"),
                _case(topics.attached_presence(gw, bad), online, "unknown"),
                _case(topics.requests(bad), _valid("bad tenant", COMMAND, "bad_topic"), "unknown"),
                _case(f"{rig.mount}/{bad}/up/register", online, "lwm2m"),
            ]
        )
    )


@MQTT_SETTINGS
@given(data=st.data())
async def test_ids_mqtt_cannot_carry_are_rejected_if_a_broker_delivers_them(
    rig: Rig, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    """Wildcards and NUL cannot be published (Mosquitto drops such a client), so these topics
    are handed to the bridge's message handler directly, as a non-conforming broker would."""
    await expect_rejection(rig, caplog, data.draw(unpublishable_cases(rig)), inject=True)


# --- found: messages that are not a counted rejection ----------------------------------------


async def test_a_reply_too_deep_to_store_is_rejected_and_counted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid reply whose output the store cannot keep is rejected like an invalid one."""
    payload = f'{{"state": "SUCCEEDED", "output": {nested(300)}}}'.encode()
    bad = BadPayload("output nested 300 levels", parts(payload), frozenset({"malformed"}))
    topic = rig.topics.reply(rig.id("silent"), rig.ids["sent"])
    await expect_rejection(rig, caplog, _case(topic, bad, "reply"), timeout=1.0)


async def test_a_request_too_deep_to_store_is_answered_422(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A request whose args the store cannot keep is answered 422 and counted."""
    body = f'{{"devices": ["{rig.id("idle")}"], "command": "PING", "args": {nested(300)}}}'
    bad = BadPayload("args nested 300 levels", parts(body.encode()), frozenset({"invalid-input"}))
    case = Case(rig.topics.requests("acme"), bad, "requests", ("tenant", "acme"), 422)
    await expect_rejection(rig, caplog, case, timeout=1.0)


async def test_an_oversized_lwm2m_uplink_is_rejected(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A register over the payload limit is rejected like any oversized payload."""
    pad = "x" * (rig.bridge.config.max_payload + 1)
    bad = _valid("oversized register", {"data": {"lt": 60, "pad": pad}}, "oversized")
    topic = f"{rig.mount}/{rig.id('meter')}/up/register"
    await expect_rejection(rig, caplog, _case(topic, bad, "lwm2m"), timeout=1.0)

"""POST /commands answered without FastAPI's machinery: only the ordinary request, the same
answers as the declared route, and every other request handed on untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from courier.api import create_app
from courier.api.fast_create import FastCreate
from courier.clock import FakeClock
from courier.metrics import Metrics
from courier.schemas.api import DeviceIn
from courier.service import Service, ServiceConfig
from courier.store import ExecutionFilter, open_store
from tests.integration.test_api import Api, make_api

PATH = "/v1/tenants/acme/commands"
# FastAPI reads any application/*+json body as JSON; the fast layer leaves such requests to it,
# so this content type sends the same request through the declared route.
VIA_ROUTE = "application/merge-patch+json"
MAX_BODY = 4096


class Harness:
    """FastCreate in front of a recorder, with a real app's state (service, rate limiter)."""

    def __init__(self, service: Service, rate_limit: float = 0.0) -> None:
        self.app = create_app(service, Metrics(), None, rate_limit=rate_limit, rate_burst=1)
        self.handed_on: list[tuple[Scope, bytes]] = []
        self.layer = FastCreate(self.recorder, self.app.state, MAX_BODY)

    async def recorder(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.handed_on.append((scope, body))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def post(
        self, chunks: list[bytes], headers: dict[str, str], path: str = PATH
    ) -> tuple[int, dict[str, str], bytes]:
        scope: Scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
            "app": self.app,
            "query_string": b"",
        }
        incoming: list[Message] = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        sent: list[Message] = []

        async def receive() -> Message:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        await self.layer(scope, receive, send)
        start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
        found = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], found, body


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[Service, dict[str, str]]]:
    store = open_store(f"sqlite:///{tmp_path}/fast.db")
    await store.open()
    service = Service(store, ServiceConfig(queue_bound=3), FakeClock(start=1_795_000_000.0))
    await service.register_device("acme", DeviceIn(id="d1"))
    keys = {
        name: (await service.create_api_key(tenant, scopes, name))[1]
        for name, tenant, scopes in (
            ("execute", "acme", ["execute"]),
            ("read", "acme", ["read"]),
            ("other", "other", ["admin"]),
        )
    }
    yield service, keys
    await store.close()


def command(**extra: Any) -> bytes:
    return orjson.dumps({"devices": ["d1"], "command": "REBOOT", **extra})


async def test_an_ordinary_create_is_answered_by_the_layer(
    service: tuple[Service, dict[str, str]],
) -> None:
    svc, keys = service
    harness = Harness(svc)
    auth = {"Authorization": f"Bearer {keys['execute']}", "Content-Type": "application/json"}
    status, headers, body = await harness.post([command()], auth)
    assert (status, harness.handed_on) == (201, [])
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    created = orjson.loads(body)
    assert [e["device"] for e in created["executions"]] == ["d1"]
    assert (await svc.store.get_request("acme", created["id"])).id == created["id"]
    # A body in several chunks, no content type, an idempotency key: still ordinary.
    chunks = [command()[:10], command()[10:]]
    keyed = {"Authorization": f"Bearer {keys['execute']}", "Idempotency-Key": "k1"}
    first = await harness.post(chunks, keyed)
    again = await harness.post(chunks, keyed)
    assert (first[0], again[0], harness.handed_on) == (201, 201, [])
    assert "idempotent-replayed" not in first[1]
    assert again[1]["idempotent-replayed"] == "true"
    assert orjson.loads(again[2])["id"] == orjson.loads(first[2])["id"]


@pytest.mark.parametrize(
    ("case", "headers", "chunks"),
    [
        ("no key", {}, [command()]),
        ("not bearer", {"Authorization": "Basic {execute}"}, [command()]),
        ("unknown key", {"Authorization": "Bearer ck_nope.nope"}, [command()]),
        ("lacks execute", {"Authorization": "Bearer {read}"}, [command()]),
        ("other tenant's key", {"Authorization": "Bearer {other}"}, [command()]),
        ("malformed JSON", {"Authorization": "Bearer {execute}"}, [b'{"devices": [']),
        ("breaks a rule", {"Authorization": "Bearer {execute}"}, [command(ttl=-1)]),
        ("empty body", {"Authorization": "Bearer {execute}"}, [b""]),
        (
            "not JSON",
            {"Authorization": "Bearer {execute}", "Content-Type": "text/plain"},
            [command()],
        ),
        (
            "+json type",
            {"Authorization": "Bearer {execute}", "Content-Type": VIA_ROUTE},
            [command()],
        ),
        (
            "long key",
            {"Authorization": "Bearer {execute}", "Idempotency-Key": "k" * 256},
            [command()],
        ),
        (
            "two keys",  # which one counts is for the route to say
            {"Authorization": "Bearer {execute}", "authorization": "Bearer {other}"},
            [command()],
        ),
    ],
)
async def test_anything_unusual_is_handed_on_with_its_body(
    service: tuple[Service, dict[str, str]],
    case: str,
    headers: dict[str, str],
    chunks: list[bytes],
) -> None:
    svc, keys = service
    harness = Harness(svc)
    filled = {k: v.format(**keys) for k, v in headers.items()}
    status, _, _ = await harness.post(chunks, filled)
    assert status == 299, case
    [(scope, body)] = harness.handed_on
    assert body == b"".join(chunks)
    assert scope["path"] == PATH
    assert (await svc.store.list_executions("acme", ExecutionFilter(), 10, 0)).count == 0


async def test_other_routes_and_a_cut_off_body_are_handed_on(
    service: tuple[Service, dict[str, str]],
) -> None:
    svc, keys = service
    harness = Harness(svc)
    auth = {"Authorization": f"Bearer {keys['execute']}"}
    for path in (PATH + "/", "/v1/tenants/acme/devices", "/v1/tenants/a%2Fb/commands"):
        assert (await harness.post([command()], auth, path))[0] == 299
    cut: list[bytes] = [command()[:5]]  # more_body=True never followed: a disconnect

    async def cut_off(scope: Scope, receive: Receive, send: Send) -> None:
        messages = [await receive(), await receive()]
        assert [m["type"] for m in messages] == ["http.request", "http.disconnect"]
        assert messages[0]["body"] == cut[0]
        harness.handed_on.append((scope, cut[0]))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    harness.layer = FastCreate(cut_off, harness.app.state, MAX_BODY)
    scope: Scope = {"type": "http", "method": "POST", "path": PATH, "headers": [], "app": None}
    incoming: list[Message] = [{"type": "http.request", "body": cut[0], "more_body": True}]

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await harness.layer(scope, receive, send)
    assert sent[0]["status"] == 299
    assert len(harness.handed_on) == 4


async def test_a_body_over_the_limit_is_handed_on_unread_past_the_limit(
    service: tuple[Service, dict[str, str]],
) -> None:
    svc, keys = service
    harness = Harness(svc)
    auth = {"Authorization": f"Bearer {keys['execute']}"}
    big = orjson.dumps({"devices": ["d1"], "command": "A", "args": {"x": "y" * MAX_BODY}})
    # Declared too long: handed on before a byte is read.
    declared = {**auth, "Content-Length": str(len(big))}
    assert (await harness.post([big], declared))[0] == 299
    # Streamed past the limit: handed on at the chunk that crossed it, the rest still to come.
    chunks = [big[i : i + 1000] for i in range(0, len(big), 1000)]
    assert (await harness.post(chunks, auth))[0] == 299
    assert [body for _, body in harness.handed_on] == [big, big]
    assert (await svc.store.list_executions("acme", ExecutionFilter(), 10, 0)).count == 0


async def test_over_the_rate_it_is_handed_on_without_spending_a_token(
    service: tuple[Service, dict[str, str]],
) -> None:
    svc, keys = service
    harness = Harness(svc, rate_limit=0.001)  # burst 1: one call, then 429 for a long while
    auth = {"Authorization": f"Bearer {keys['execute']}"}
    assert (await harness.post([command()], auth))[0] == 201
    assert (await harness.post([command()], auth))[0] == 299
    assert len(harness.handed_on) == 1


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for made in make_api(tmp_path):
        yield made


async def both(api: Api, body: bytes, headers: dict[str, str] | None = None) -> list[Any]:
    """The same request through the layer and through the declared route."""
    answers = []
    for content_type in ("application/json", VIA_ROUTE):
        response = await api.call(
            "POST",
            PATH,
            "execute",
            content=body,
            headers={"Content-Type": content_type, **(headers or {})},
        )
        answers.append(response)
    return answers


async def test_the_layer_and_the_route_answer_alike(api: Api) -> None:
    await api.device("d1")
    fast, route = await both(api, command(ttl=600, args={"n": 1}))
    assert fast.status_code == route.status_code == 201
    assert fast.headers["content-type"] == route.headers["content-type"]

    def shape(answer: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in answer.items() if k not in ("id", "executions")}

    assert shape(fast.json()) == shape(route.json())
    assert [e.keys() for e in fast.json()["executions"]] == [
        e.keys() for e in route.json()["executions"]
    ]
    # Errors the service raises after validation: unknown device, idempotency key reused for
    # another command, full queue (bound 3: two are queued, the keyed one makes three).
    keyed = {"Idempotency-Key": "k1"}
    assert (await api.call("POST", PATH, "execute", content=command(), headers=keyed)).is_success
    for body, headers, slug in (
        (orjson.dumps({"devices": ["d1", "ghost"], "command": "A"}), {}, "unknown-devices"),
        (orjson.dumps({"devices": ["d1"], "command": "LOCK"}), keyed, "idempotency-conflict"),
        (command(), {}, "queue-full"),
    ):
        fast, route = await both(api, body, headers)
        assert fast.json()["type"] == f"urn:courier:problem:{slug}", fast.text
        assert fast.status_code == route.status_code
        assert fast.headers["content-type"] == route.headers["content-type"]
        assert fast.json() == route.json()

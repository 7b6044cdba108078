"""The native REST API in-process over SQLite: auth, tenants, validation, every route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from courier.api import create_app
from courier.clock import FakeClock
from courier.metrics import Metrics
from courier.schemas.api import DEFAULT_RETRY
from courier.service import Service, ServiceConfig
from courier.store import open_store


@dataclass
class Api:
    client: httpx.AsyncClient
    service: Service
    clock: FakeClock
    keys: dict[str, str]

    async def call(
        self, method: str, path: str, key: str = "admin", **kwargs: Any
    ) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {self.keys[key]}"
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def device(
        self, device_id: str, tenant: str = "acme", key: str = "admin"
    ) -> dict[str, Any]:
        response = await self.call(
            "POST", f"/v1/tenants/{tenant}/devices", key, json={"id": device_id}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def command(self, devices: list[str], **body: Any) -> httpx.Response:
        return await self.call(
            "POST",
            "/v1/tenants/acme/commands",
            "execute",
            json={"devices": devices, "command": "REBOOT", **body},
        )


async def make_api(tmp_path: Path, rate_limit: float = 0.0) -> AsyncIterator[Api]:
    clock = FakeClock(start=1_795_000_000.0)
    store = open_store(f"sqlite:///{tmp_path}/api.db")
    await store.open()
    config = ServiceConfig(queue_bound=3, files_dir=str(tmp_path / "files"), max_file_size=4096)
    service = Service(store, config, clock)
    app = create_app(
        service, Metrics(), None, max_body=64 * 1024, rate_limit=rate_limit, rate_burst=3
    )
    keys = {}
    for name, tenant, scopes in (
        ("admin", "acme", ["admin"]),
        ("read", "acme", ["read"]),
        ("execute", "acme", ["read", "execute"]),
        ("other", "other", ["admin"]),
    ):
        keys[name] = (await service.create_api_key(tenant, scopes, name))[1]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://courier") as client:
        yield Api(client, service, clock, keys)
    await store.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for made in make_api(tmp_path):
        yield made


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:courier:problem:")
    return dict(body)


async def test_without_a_valid_key_every_route_is_401(api: Api) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {api.keys['admin']}x"},
    ):
        response = await api.client.get("/v1/tenants/acme/devices", headers=headers)
        problem(response, 401)


async def test_revoked_and_expired_keys_are_401(api: Api) -> None:
    created = await api.call(
        "POST", "/v1/tenants/acme/apikeys", json={"scopes": ["read"], "expires_in": 60}
    )
    assert created.status_code == 201
    body = created.json()
    short = {"Authorization": f"Bearer {body['key']}"}
    assert (await api.client.get("/v1/tenants/acme/devices", headers=short)).status_code == 200
    api.clock.advance(61)
    assert (
        "expired"
        in problem(await api.client.get("/v1/tenants/acme/devices", headers=short), 401)["detail"]
    )
    listed = await api.call("GET", "/v1/tenants/acme/apikeys")
    assert body["id"] in [k["id"] for k in listed.json()]
    assert "key" not in listed.json()[0]
    revoked = await api.call("DELETE", f"/v1/tenants/acme/apikeys/{body['id']}")
    assert revoked.json()["revoked_on"] is not None
    read_id = next(k["id"] for k in listed.json() if k["name"] == "read")
    # A key in use (so held in the server's short cache) stops working at once when revoked
    # through the API; it had not expired.
    assert (await api.call("GET", "/v1/tenants/acme/devices", "read")).status_code == 200
    await api.call("DELETE", f"/v1/tenants/acme/apikeys/{read_id}")
    assert (
        "revoked"
        in problem(await api.call("GET", "/v1/tenants/acme/devices", "read"), 401)["detail"]
    )


async def test_missing_scopes_are_403(api: Api) -> None:
    problem(await api.call("POST", "/v1/tenants/acme/devices", "read", json={"id": "x"}), 403)
    problem(await api.call("POST", "/v1/tenants/acme/devices", "execute", json={"id": "x"}), 403)
    response = await api.call(
        "POST", "/v1/tenants/acme/commands", "read", json={"devices": ["x"], "command": "A"}
    )
    problem(response, 403)
    problem(
        await api.call("POST", "/v1/tenants/acme/apikeys", "execute", json={"scopes": ["read"]}),
        403,
    )


async def test_other_tenants_resources_are_404_and_ids_do_not_leak(api: Api) -> None:
    await api.device("d1")
    created = (await api.command(["d1"])).json()
    eid, rid = created["executions"][0]["id"], created["id"]
    for path in (
        "/v1/tenants/acme/devices/d1",
        f"/v1/tenants/acme/executions/{eid}",
        f"/v1/tenants/acme/commands/{rid}",
    ):
        problem(await api.call("GET", path, "other"), 404)
    for path in (
        "/v1/tenants/other/devices/d1",
        f"/v1/tenants/other/executions/{eid}",
        f"/v1/tenants/other/commands/{rid}",
        f"/v1/tenants/other/executions/{eid}/history",
    ):
        assert "no " in problem(await api.call("GET", path, "other"), 404)["detail"]
    problem(await api.call("POST", f"/v1/tenants/other/executions/{eid}/cancel", "other"), 404)
    response = await api.call(
        "POST", "/v1/tenants/other/commands", "other", json={"devices": ["d1"], "command": "REBOOT"}
    )
    assert problem(response, 422)["devices"] == ["d1"]


async def test_device_registry(api: Api) -> None:
    body = await api.device("pump-7")
    assert body["credentials"]["username"] == "pump-7"
    assert len(body["credentials"]["password"]) >= 24
    assert body["online"] is False
    problem(await api.call("POST", "/v1/tenants/acme/devices", json={"id": "pump-7"}), 409)
    got = (await api.call("GET", "/v1/tenants/acme/devices/pump-7", "read")).json()
    assert "credentials" not in got
    patched = await api.call(
        "PATCH",
        "/v1/tenants/acme/devices/pump-7",
        json={"labels": {"site": "north"}, "timezone": "Europe/Paris"},
    )
    assert patched.json()["labels"] == {"site": "north"}
    assert patched.json()["timezone"] == "Europe/Paris"
    bad_tz = await api.call(
        "PATCH", "/v1/tenants/acme/devices/pump-7", json={"timezone": "Mars/Base"}
    )
    assert "unknown time zone" in problem(bad_tz, 422)["detail"]
    listed = (await api.call("GET", "/v1/tenants/acme/devices?online=false", "read")).json()
    assert [d["id"] for d in listed["results"]] == ["pump-7"]
    assert (await api.call("DELETE", "/v1/tenants/acme/devices/pump-7")).status_code == 204
    problem(await api.call("GET", "/v1/tenants/acme/devices/pump-7"), 404)


@pytest.mark.parametrize(
    ("device_id", "why"),
    [
        ("a/b", "'/'"),
        ("a+b", "'+'"),
        ("a#b", "'#'"),
        ("a$b", "'$'"),
        ("a:b", "':'"),
        ("a\u0000b", "NUL"),
        ("ünï", "must match"),
        ("", "empty"),
        ("x" * 65, "longer"),
    ],
)
async def test_bad_device_ids_are_422_with_the_reason(api: Api, device_id: str, why: str) -> None:
    registered = await api.call("POST", "/v1/tenants/acme/devices", json={"id": device_id})
    assert why in problem(registered, 422)["detail"]
    commanded = await api.command([device_id])
    assert why in problem(commanded, 422)["detail"]


@pytest.mark.parametrize(
    ("raw", "why"),
    [("a%2Bb", "'+'"), ("a%23b", "'#'"), ("a%00b", "NUL"), ("a%3Ab", "':'"), ("a%24b", "'$'")],
)
async def test_bad_device_ids_in_paths_are_422(api: Api, raw: str, why: str) -> None:
    response = await api.call("GET", f"/v1/tenants/acme/devices/{raw}")
    assert why in problem(response, 422)["detail"]


async def test_create_command_and_follow_it(api: Api) -> None:
    await api.device("d1")
    await api.device("d2")
    response = await api.command(
        ["d1", "d2"],
        args={"delay": 5},
        ttl=600,
        timeout=20,
        retry={"max_attempts": 2, "on": "both"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["issued_by"].startswith("apikey:")
    assert body["created_on"].endswith("Z")
    assert [(e["device"], e["state"]) for e in body["executions"]] == [
        ("d1", "QUEUED"),
        ("d2", "QUEUED"),
    ]
    assert body["retry"] == {
        "max_attempts": 2,
        "on": "both",
        "backoff": {"initial": 1.0, "multiplier": 2.0, "max": 60.0},
    }
    one = await api.call("GET", f"/v1/tenants/acme/commands/{body['id']}", "read")
    assert one.json()["state_counts"] == {"QUEUED": 2}
    eid = body["executions"][0]["id"]
    execution = (await api.call("GET", f"/v1/tenants/acme/executions/{eid}", "read")).json()
    assert execution["state"] == "QUEUED"
    assert execution["esper_state"] == "Command Queued"
    history = (await api.call("GET", f"/v1/tenants/acme/executions/{eid}/history", "read")).json()
    assert [h["state"] for h in history] == ["QUEUED"]


async def test_a_request_naming_no_retry_gets_the_default_one_and_others_their_own(
    api: Api,
) -> None:
    """Every body without `retry` shares one default policy: one naming its own changes
    neither it nor the requests created before."""
    await api.device("d1")
    backoff = {"initial": 1.0, "multiplier": 2.0, "max": 60.0}
    defaults = {"max_attempts": 3, "on": "timeout", "backoff": backoff}
    first = (await api.command(["d1"])).json()
    own = (await api.command(["d1"], retry={"max_attempts": 5, "backoff": {"max": 9}})).json()
    last = (await api.command(["d1"])).json()
    assert first["retry"] == last["retry"] == defaults
    assert own["retry"] == {
        **defaults,
        "max_attempts": 5,
        "backoff": {**backoff, "max": 9.0},
    }
    for created, attempts in ((first, 3), (own, 5), (last, 3)):
        eid = created["executions"][0]["id"]
        execution = (await api.call("GET", f"/v1/tenants/acme/executions/{eid}", "read")).json()
        assert execution["max_attempts"] == attempts
    stored = (await api.call("GET", f"/v1/tenants/acme/commands/{own['id']}", "read")).json()
    assert stored["retry"] == own["retry"]
    with pytest.raises(ValidationError):
        DEFAULT_RETRY.max_attempts = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"devices": [], "command": "A"}, "devices"),
        ({"devices": [f"d{i}" for i in range(1001)], "command": "A"}, "devices"),
        ({"devices": ["d1"], "command": "A", "groups": ["g1"]}, "groups"),
        ({"devices": ["d1"]}, "command"),
        ({"devices": ["d1"], "command": "bad name!"}, "command"),
        ({"devices": ["d1"], "command": "A", "ttl": -1}, "ttl"),
        ({"devices": ["d1"], "command": "A", "ttl": 31 * 86400}, "ttl"),
        ({"devices": ["d1"], "command": "A", "timeout": 0.5}, "timeout"),
        ({"devices": ["d1"], "command": "A", "retry": {"max_attempts": 11}}, "retry.max_attempts"),
        ({"devices": ["d1"], "command": "A", "retry": {"on": "never"}}, "retry.on"),
        ({"devices": ["d1"], "command": "A", "args": [1]}, "args"),
        ({"devices": ["d1"], "command": "A", "device_type": "sometimes"}, "device_type"),
        ({"devices": ["d1"], "command": "A", "surprise": 1}, "surprise"),
        ({"devices": "d1", "command": "A"}, "devices"),
    ],
)
async def test_bad_command_bodies_are_422_naming_the_field(
    api: Api, body: dict[str, Any], where: str
) -> None:
    response = await api.call("POST", "/v1/tenants/acme/commands", "execute", json=body)
    details = problem(response, 422)
    assert any(e["loc"].startswith(where) for e in details["errors"]), details


async def test_unknown_devices_are_422_naming_them_and_nothing_is_created(api: Api) -> None:
    await api.device("d1")
    response = await api.command(["d1", "ghost"])
    body = problem(response, 422)
    assert body["devices"] == ["ghost"]
    assert "ghost" in body["detail"]
    listed = (await api.call("GET", "/v1/tenants/acme/executions", "read")).json()
    assert listed["count"] == 0


async def test_malformed_json_is_400_and_huge_bodies_are_413(api: Api) -> None:
    response = await api.call(
        "POST",
        "/v1/tenants/acme/commands",
        "execute",
        content=b'{"devices": [',
        headers={"content-type": "application/json"},
    )
    assert "not valid JSON" in problem(response, 400)["detail"]
    huge = {"devices": ["d1"], "command": "A", "args": {"blob": "x" * 100_000}}
    problem(await api.call("POST", "/v1/tenants/acme/commands", "execute", json=huge), 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    streamed = await api.call(
        "POST",
        "/v1/tenants/acme/commands",
        "execute",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    problem(streamed, 413)


async def test_idempotency_key(api: Api) -> None:
    await api.device("d1")
    first = await api.call(
        "POST",
        "/v1/tenants/acme/commands",
        "execute",
        json={"devices": ["d1"], "command": "REBOOT"},
        headers={"Idempotency-Key": "abc"},
    )
    again = await api.call(
        "POST",
        "/v1/tenants/acme/commands",
        "execute",
        json={"devices": ["d1"], "command": "REBOOT"},
        headers={"Idempotency-Key": "abc"},
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await api.call(
        "POST",
        "/v1/tenants/acme/commands",
        "execute",
        json={"devices": ["d1"], "command": "LOCK"},
        headers={"Idempotency-Key": "abc"},
    )
    problem(other, 409)
    assert (await api.call("GET", "/v1/tenants/acme/executions", "read")).json()["count"] == 1


async def test_queue_bound_is_a_clear_409(api: Api) -> None:
    await api.device("d1")
    for _ in range(3):
        assert (await api.command(["d1"])).status_code == 201
    body = problem(await api.command(["d1"]), 409)
    assert body["type"] == "urn:courier:problem:queue-full"
    assert body["devices"] == ["d1"]


async def test_inbox_state_updates_cancel_and_retry(api: Api) -> None:
    await api.device("poller")
    eid = (await api.command(["poller"], args={"n": 1})).json()["executions"][0]["id"]
    early = await api.call(
        "PUT", f"/v1/tenants/acme/executions/{eid}/state", "execute", json={"state": "SUCCEEDED"}
    )
    assert problem(early, 409)["current_state"] == "QUEUED"
    inbox = await api.call("GET", "/v1/tenants/acme/devices/poller/inbox", "execute")
    assert inbox.status_code == 200
    (envelope,) = inbox.json()
    assert envelope["id"] == eid
    assert envelope["args"] == {"n": 1}
    assert envelope["attempt"] == 1
    assert (await api.call("GET", "/v1/tenants/acme/devices/poller/inbox", "execute")).json() == []
    ack = await api.call(
        "PUT",
        f"/v1/tenants/acme/executions/{eid}/state",
        "execute",
        json={"state": "ACKNOWLEDGED", "reason": "got it"},
    )
    assert ack.json()["state"] == "ACKNOWLEDGED"
    done = await api.call(
        "PUT",
        f"/v1/tenants/acme/executions/{eid}/state",
        "execute",
        json={"state": "SUCCEEDED", "output": {"ok": True}},
    )
    assert done.json()["output"] == {"ok": True}
    illegal = await api.call(
        "PUT", f"/v1/tenants/acme/executions/{eid}/state", "execute", json={"state": "IN_PROGRESS"}
    )
    assert problem(illegal, 409)["current_state"] == "SUCCEEDED"
    wrong = await api.call(
        "PUT", f"/v1/tenants/acme/executions/{eid}/state", "execute", json={"state": "DONE"}
    )
    problem(wrong, 422)
    problem(await api.call("POST", f"/v1/tenants/acme/executions/{eid}/cancel", "execute"), 409)
    retried = await api.call("POST", f"/v1/tenants/acme/executions/{eid}/retry", "execute")
    assert retried.status_code == 201
    new = retried.json()
    assert new["retry_of"] == eid
    assert new["state"] == "QUEUED"
    cancelled = await api.call(
        "POST",
        f"/v1/tenants/acme/executions/{new['id']}/cancel",
        "execute",
        json={"reason": "changed my mind"},
    )
    assert cancelled.json()["state"] == "CANCELLED"
    assert cancelled.json()["reason"] == "changed my mind"
    problem(
        await api.call("POST", f"/v1/tenants/acme/executions/{new['id']}/cancel", "execute"), 409
    )
    problem(await api.call("POST", "/v1/tenants/acme/executions/nope/retry", "execute"), 404)
    problem(await api.call("GET", "/v1/tenants/acme/devices/ghost/inbox", "execute"), 404)


async def test_cancel_a_whole_request(api: Api) -> None:
    await api.device("d1")
    await api.device("d2")
    rid = (await api.command(["d1", "d2"])).json()["id"]
    response = await api.call("POST", f"/v1/tenants/acme/commands/{rid}/cancel", "execute")
    assert response.json()["state_counts"] == {"CANCELLED": 2}


async def test_lists_filter_and_paginate(api: Api) -> None:
    for name in ("d1", "d2", "d3"):
        await api.device(name)
    for command in ("REBOOT", "LOCK"):
        await api.call(
            "POST",
            "/v1/tenants/acme/commands",
            "execute",
            json={"devices": ["d1", "d2", "d3"], "command": command},
        )
    page = (await api.call("GET", "/v1/tenants/acme/executions?limit=4", "read")).json()
    assert page["count"] == 6
    assert len(page["results"]) == 4
    assert page["previous"] is None
    second = (
        await api.client.get(page["next"], headers={"Authorization": f"Bearer {api.keys['read']}"})
    ).json()
    assert len(second["results"]) == 2
    assert second["next"] is None
    assert "offset=0" in second["previous"]
    filtered = (
        await api.call(
            "GET", "/v1/tenants/acme/executions?device_ids=d1,d3&command=LOCK&state=queued", "read"
        )
    ).json()
    assert filtered["count"] == 2
    problem(await api.call("GET", "/v1/tenants/acme/executions?state=DONE", "read"), 422)
    problem(await api.call("GET", "/v1/tenants/acme/executions?limit=0", "read"), 422)
    problem(
        await api.call("GET", "/v1/tenants/acme/executions?since=2026-01-01T00:00:00", "read"), 422
    )
    history = (
        await api.call("GET", "/v1/tenants/acme/devices/d2/executions?state=QUEUED", "read")
    ).json()
    assert history["count"] == 2
    requests = (await api.call("GET", "/v1/tenants/acme/commands?command=LOCK", "read")).json()
    assert requests["count"] == 1
    assert requests["results"][0]["command"] == "LOCK"


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    async for api in make_api(tmp_path, rate_limit=1.0):
        statuses = [
            (await api.call("GET", "/v1/tenants/acme/devices", "read")).status_code
            for _ in range(5)
        ]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3] == 429
        limited = await api.call("GET", "/v1/tenants/acme/devices", "read")
        assert int(limited.headers["Retry-After"]) >= 1
        assert "rate limit" in problem(limited, 429)["detail"]
        ok = await api.call("GET", "/v1/tenants/acme/devices", "admin")
        assert ok.status_code == 200


async def test_operations_endpoints_and_openapi(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["store"] == "ok"
    metrics = await api.client.get("/metrics")
    assert 'courier_executions{state="QUEUED"}' in metrics.text
    spec = (await api.client.get("/openapi.json")).json()
    paths = set(spec["paths"])
    for route in (
        "/v1/tenants/{tenant}/devices",
        "/v1/tenants/{tenant}/devices/{device_id}",
        "/v1/tenants/{tenant}/devices/{device_id}/executions",
        "/v1/tenants/{tenant}/devices/{device_id}/inbox",
        "/v1/tenants/{tenant}/commands",
        "/v1/tenants/{tenant}/commands/{request_id}",
        "/v1/tenants/{tenant}/commands/{request_id}/cancel",
        "/v1/tenants/{tenant}/executions",
        "/v1/tenants/{tenant}/executions/{execution_id}",
        "/v1/tenants/{tenant}/executions/{execution_id}/history",
        "/v1/tenants/{tenant}/executions/{execution_id}/state",
        "/v1/tenants/{tenant}/executions/{execution_id}/cancel",
        "/v1/tenants/{tenant}/executions/{execution_id}/retry",
        "/v1/tenants/{tenant}/apikeys",
        "/v1/tenants/{tenant}/apikeys/{key_id}",
    ):
        assert route in paths, route
    problem(await api.client.get("/v1/nothing-here"), 404)


def http_count(text: str, method: str, route: str, status: str) -> float:
    line = f'courier_http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0][len(line) :]) if found else 0.0


async def test_http_requests_are_counted_by_route_template_and_status(api: Api) -> None:
    await api.device("d1")
    assert (await api.command(["d1"])).status_code == 201  # the fast create layer
    assert (await api.command(["d1"], priority="high")).status_code == 422  # the full route
    assert (await api.call("GET", "/v1/tenants/acme/devices/d1")).status_code == 200
    assert (await api.call("GET", "/v1/tenants/acme/devices/nobody")).status_code == 404
    assert (await api.client.get("/v1/nothing-here")).status_code == 404
    text = (await api.client.get("/metrics")).text
    commands = "/v1/tenants/{tenant}/commands"
    device = "/v1/tenants/{tenant}/devices/{device_id}"
    assert http_count(text, "POST", "/v1/tenants/{tenant}/devices", "201") == 1
    assert http_count(text, "POST", commands, "201") == 1
    assert http_count(text, "POST", commands, "422") == 1
    assert http_count(text, "GET", device, "200") == 1
    assert http_count(text, "GET", device, "404") == 1
    assert http_count(text, "GET", "unmatched", "404") == 1
    assert "nobody" not in text  # route templates, never raw paths
    assert "/devices/d1" not in text

"""The file store, software updates, settings, stored commands, EdgeIQ gateway commands and
LwM2M validation over the REST API (in-process, SQLite, a fake clock)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api import Api, make_api, problem


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for made in make_api(tmp_path):
        yield made


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def upload(
    api: Api, data: bytes, name: str = "a.bin", key: str = "admin", **kwargs: Any
) -> Any:
    return await api.call(
        "POST", "/v1/tenants/acme/files", key, params={"name": name}, content=data, **kwargs
    )


async def test_files_are_stored_listed_downloaded_and_deleted(api: Api) -> None:
    data = b"\x00\x01payload" * 300
    response = await upload(api, data, headers={"Content-Type": "application/x-tar"})
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["size"] == len(data)
    assert stored["content_type"] == "application/x-tar"
    listed = (await api.call("GET", "/v1/tenants/acme/files", "read")).json()
    assert [f["id"] for f in listed["results"]] == [stored["id"]]
    content = await api.call("GET", f"/v1/tenants/acme/files/{stored['id']}/content", "read")
    assert content.content == data
    # Another tenant's key does not see it; a read key cannot upload or delete.
    other = await api.call("GET", f"/v1/tenants/other/files/{stored['id']}", "other")
    problem(other, 404)
    problem(await upload(api, b"x", key="read"), 403)
    gone = await api.call("DELETE", f"/v1/tenants/acme/files/{stored['id']}")
    assert gone.status_code == 204
    problem(await api.call("GET", f"/v1/tenants/acme/files/{stored['id']}"), 404)
    assert not files_under(api.service.files.storage.root)


async def test_uploads_past_the_size_limit_are_refused_and_leave_nothing(api: Api) -> None:
    problem(await upload(api, b"x" * 4097), 413)  # the test service allows 4096 bytes
    assert (await api.call("GET", "/v1/tenants/acme/files")).json()["count"] == 0
    assert not files_under(api.service.files.storage.root)
    problem(await upload(api, b"x", name="a/b"), 422)


async def test_signed_links_work_until_they_expire(api: Api) -> None:
    stored = (await upload(api, b"firmware")).json()
    links = await api.service.files.links(api.clock)
    url, _ = links.download("acme", stored["id"], api.clock.now())
    path = url.removeprefix(links.public_url)
    assert (await api.client.get(path)).content == b"firmware"
    problem(await api.client.get(path[:-2] + "xx"), 403)  # tampered
    problem(await api.client.put(path.replace("/files/", "/uploads/"), content=b"x"), 403)
    api.clock.advance(links.ttl + 1)
    expired = problem(await api.client.get(path), 403)
    assert "expired" in expired["detail"]


async def test_upload_links_land_files_for_their_execution(api: Api) -> None:
    await api.device("box")
    created = await api.command(
        ["box"], command="lwm2m_file", args={"type": "filedownload", "filepath": "/tmp/x.log"}
    )
    assert created.status_code == 201, created.text
    execution_id = created.json()["executions"][0]["id"]
    links = await api.service.files.links(api.clock)
    queued_url, _ = links.upload("acme", execution_id, "/tmp/x.log", api.clock.now())
    queued = await api.client.put(queued_url.removeprefix(links.public_url), content=b"early")
    assert "QUEUED" in problem(queued, 403)["detail"]  # not sent: nobody was given the link
    (envelope,) = (await api.call("GET", "/v1/tenants/acme/devices/box/inbox", "execute")).json()
    path = envelope["args"]["upload_url"].removeprefix(links.public_url)
    answer = await api.client.put(path, content=b"log lines")
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(b"log lines").hexdigest()
    file_id = answer.json()["file_id"]
    meta = (await api.call("GET", f"/v1/tenants/acme/files/{file_id}")).json()
    assert meta["name"] == "x.log"
    assert meta["execution_id"] == execution_id
    history = (await api.call("GET", f"/v1/tenants/acme/executions/{execution_id}/history")).json()
    assert [e["data"]["file_id"] for e in history if e["kind"] == "file"] == [file_id]
    done = await api.call(
        "PUT",
        f"/v1/tenants/acme/executions/{execution_id}/state",
        "execute",
        json={"state": "SUCCEEDED", "output": answer.json()},
    )
    assert done.status_code == 200, done.text
    ended = await api.client.put(path, content=b"again")
    assert "SUCCEEDED" in problem(ended, 403)["detail"]
    api.clock.advance(links.ttl + 1)
    problem(await api.client.put(path, content=b"late"), 403)


async def test_the_link_a_device_is_sent_works_until_it_expires(api: Api) -> None:
    package = b"firmware bytes"
    stored = (await upload(api, package)).json()
    update = await api.call(
        "POST",
        "/v1/tenants/acme/software_updates",
        json={"name": "fw", "version": "3", "file_id": stored["id"]},
    )
    await api.device("box")
    created = await api.command(
        ["box"], command="software_update", args={"software_update_id": update.json()["id"]}
    )
    assert created.status_code == 201, created.text
    (envelope,) = (await api.call("GET", "/v1/tenants/acme/devices/box/inbox", "execute")).json()
    args = envelope["args"]
    assert args["sha256"] == hashlib.sha256(package).hexdigest()
    links = await api.service.files.links(api.clock)
    path = args["url"].removeprefix(links.public_url)
    fetched = await api.client.get(path)
    assert fetched.status_code == 200
    assert fetched.content == package
    assert args["url_expires_at"].endswith("Z")
    api.clock.advance(links.ttl + 1)
    problem(await api.client.get(path), 403)


async def test_software_updates_settings_and_stored_commands(api: Api) -> None:
    stored = (await upload(api, b"pkg")).json()
    bad = await api.call(
        "POST",
        "/v1/tenants/acme/software_updates",
        json={"name": "fw", "version": "1", "file_id": "nope"},
    )
    assert "no file nope" in problem(bad, 422)["detail"]
    update = await api.call(
        "POST",
        "/v1/tenants/acme/software_updates",
        json={"name": "fw", "version": "1.2", "file_id": stored["id"]},
    )
    assert update.status_code == 201
    listed = (await api.call("GET", "/v1/tenants/acme/software_updates")).json()
    assert listed["results"][0]["version"] == "1.2"
    problem(await api.call("DELETE", f"/v1/tenants/acme/files/{stored['id']}"), 409)

    setting = {"name": "net", "document": {"apn": "iot"}}
    first = await api.call("POST", "/v1/tenants/acme/settings", json=setting)
    assert first.status_code == 201
    problem(await api.call("POST", "/v1/tenants/acme/settings", json=setting), 409)
    changed = await api.call(
        "PUT",
        f"/v1/tenants/acme/settings/{first.json()['id']}",
        json={"name": "net", "document": {"apn": "m2m"}},
    )
    assert changed.json()["document"] == {"apn": "m2m"}

    saved = await api.call(
        "POST",
        "/v1/tenants/acme/stored_commands",
        json={"name": "read-battery", "command": "lwm2m_request", "args": {"type": "read"}},
    )
    assert "endpoint" in problem(saved, 422)["detail"]
    saved = await api.call(
        "POST",
        "/v1/tenants/acme/stored_commands",
        json={
            "name": "read-battery",
            "command": "lwm2m_request",
            "args": {"type": "read", "endpoint": "/3/0/9"},
            "ttl": 600,
        },
    )
    assert saved.status_code == 201, saved.text

    await api.device("gw")
    gateway_command = await api.call(
        "POST",
        "/v1/tenants/acme/devices/gw/gateway_commands",
        "execute",
        json={"command_type": "command", "command_id": saved.json()["id"]},
    )
    assert gateway_command.status_code == 200, gateway_command.text
    request_id = gateway_command.json()["_id"]
    request = (await api.call("GET", f"/v1/tenants/acme/commands/{request_id}")).json()
    assert request["command"] == "lwm2m_request"
    assert request["args"] == {"type": "read", "endpoint": "/3/0/9"}
    assert request["ttl"] == 600

    for body, words in (
        ({"command_type": "software_update", "software_update_id": "nope"}, "no software update"),
        ({"command_type": "setting", "setting_id": "nope"}, "no setting"),
        ({"command_type": "setting"}, "setting_id"),
        ({"command_type": "command", "command_id": "nope"}, "no stored command"),
    ):
        response = await api.call(
            "POST", "/v1/tenants/acme/devices/gw/gateway_commands", "execute", json=body
        )
        assert words in problem(response, 422)["detail"], body


async def test_gateway_commands_fan_out_to_attached_devices_only(api: Api) -> None:
    await api.call("POST", "/v1/tenants/acme/devices", json={"id": "gw", "kind": "gateway"})
    for name in ("a", "b"):
        response = await api.call(
            "POST", "/v1/tenants/acme/devices", json={"id": name, "gateway_id": "gw"}
        )
        assert response.status_code == 201
    await api.device("loose")
    body: dict[str, Any] = {
        "command_type": "lwm2m_request",
        "type": "write",
        "endpoint": "/3/0/13",
        "data": 5,
        "attached_device_ids": ["a", "b"],
        "expiry": 120,
        "retry_options": {"max_retries": 1, "retry_on": "timeout"},
    }
    response = await api.call(
        "POST", "/v1/tenants/acme/devices/gw/gateway_commands", "execute", json=body
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert sorted(e["device"] for e in answer["executions"]) == ["a", "b"]
    request = (await api.call("GET", f"/v1/tenants/acme/commands/{answer['_id']}")).json()
    assert request["ttl"] == 120
    assert request["retry"]["max_attempts"] == 2
    body["attached_device_ids"] = ["a", "loose"]
    response = await api.call(
        "POST", "/v1/tenants/acme/devices/gw/gateway_commands", "execute", json=body
    )
    assert "loose is not attached to gw" in problem(response, 422)["detail"]
    response = await api.call(
        "POST", "/v1/tenants/other/devices/gw/gateway_commands", "other", json=body
    )
    problem(response, 404)


async def test_a_software_update_runs_in_its_schedule_and_only_it_has_one(api: Api) -> None:
    stored = (await upload(api, b"firmware")).json()
    update = await api.call(
        "POST",
        "/v1/tenants/acme/software_updates",
        json={"name": "fw", "version": "2.0", "file_id": stored["id"]},
    )
    await api.device("gw")
    schedule = {
        "type": "RECURRING",
        "window_start_time": "02:00",
        "window_end_time": "04:00",
        "days": ["SATURDAY", "Sunday"],
    }
    body = {
        "command_type": "software_update",
        "software_update_id": update.json()["id"],
        "schedule": schedule,
    }
    path = "/v1/tenants/acme/devices/gw/gateway_commands"
    response = await api.call("POST", path, "execute", json=body)
    assert response.status_code == 200, response.text
    assert [e["state"] for e in response.json()["executions"]] == ["SCHEDULED"]
    request = (await api.call("GET", f"/v1/tenants/acme/commands/{response.json()['_id']}")).json()
    assert request["schedule"] == "RECURRING"
    assert request["schedule_args"]["days"] == ["saturday", "sunday"]
    for other in ({"command_type": "PING"}, {"command_type": "setting", "setting_id": "s"}):
        refused = await api.call("POST", path, "execute", json={**other, "schedule": schedule})
        assert "only a software_update" in problem(refused, 422)["detail"]
    openapi = (await api.call("GET", "/openapi.json", "")).json()
    schemas = openapi["components"]["schemas"]
    options = schemas["GatewayCommandIn"]["properties"]["command_type"]["anyOf"]
    assert {"$ref": "#/components/schemas/GatewayCommandType"} in options
    assert schemas["GatewayCommandType"]["enum"] == [
        "software_update",
        "setting",
        "command",
        "lwm2m_request",
        "lwm2m_file",
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"type": "read", "endpoint": "3/0/1"}, "not an LwM2M path"),
        ({"type": "read", "endpoint": "/3/0/x"}, "not an LwM2M path"),
        ({"type": "read", "endpoint": "/3/65535"}, "out of range"),
        ({"type": "read", "endpoint": "/3/0/1/2/5"}, "not an LwM2M path"),
        ({"type": "exec", "endpoint": "/3/0"}, "exec takes a path"),
        ({"type": "write", "endpoint": "/3"}, "write takes a path"),
        ({"type": "write", "endpoint": "/3/0/13"}, "give a value"),
        (
            {"type": "write", "endpoint": "/3/0/13", "data": {"type": "Integer", "value": "7"}},
            "not a valid Integer",
        ),
        (
            {"type": "write", "endpoint": "/3/0/13", "data": {"type": "Decimal", "value": 7}},
            "not one of",
        ),
        (
            {"type": "write", "endpoint": "/5/0/0", "data": {"type": "Opaque", "value": "%%"}},
            "not a valid Opaque",
        ),
        ({"type": "read", "endpoint": "/3/0/1", "data": 5}, "read takes no data"),
        ({"type": "reboot", "endpoint": "/3/0/4"}, "is not one of"),
        ({"type": "write-attr", "endpoint": "/3/0/9", "data": {"pmin": "1"}}, "must be a number"),
        ({"type": "read", "endpoint": 3}, "endpoint"),
    ],
)
async def test_invalid_lwm2m_requests_are_422(api: Api, args: dict[str, Any], words: str) -> None:
    await api.device("meter")
    response = await api.command(["meter"], command="lwm2m_request", args=args)
    assert words in problem(response, 422)["detail"], response.text


async def test_invalid_lwm2m_files_and_references_are_422(api: Api) -> None:
    await api.device("meter")
    for command, args, words in (
        ("lwm2m_file", {"type": "fileupload", "filepath": "/fw"}, "file_id"),
        ("lwm2m_file", {"type": "fileupload", "file_id": "nope", "filepath": "/fw"}, "no file"),
        ("lwm2m_file", {"type": "push", "filepath": "/fw"}, "type"),
        ("software_update", {"software_update_id": "nope"}, "no software update"),
        ("setting", {}, "setting_id"),
    ):
        response = await api.command(["meter"], command=command, args=args)
        assert words in problem(response, 422)["detail"], (command, args, response.text)

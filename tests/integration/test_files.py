"""Files to and from devices through signed links, software updates and settings, on a real
Mosquitto, SQLite and HTTP server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from courier.gateway import Agent, CommandContext
from courier.gateway.files import fetch, send
from courier.schemas.states import TERMINAL, ExecutionState
from tests.helpers import eventually
from tests.integration.conftest import Courier

S = ExecutionState


class Client:
    def __init__(self, courier: Courier, key: str) -> None:
        self.courier = courier
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{courier.http_port}/v1/tenants/acme",
            headers={"Authorization": f"Bearer {key}"},
        )

    async def upload(self, data: bytes, name: str = "blob.bin") -> dict[str, Any]:
        response = await self.http.post("/files", params={"name": name}, content=data)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def ended(self, execution_id: str) -> dict[str, Any]:
        async def done() -> bool:
            found = await self.courier.store.get_execution("acme", execution_id)
            return found.state in TERMINAL

        await eventually(done, what=f"execution {execution_id} ended")
        response = await self.http.get(f"/executions/{execution_id}")
        return dict(response.json())


@pytest.fixture
async def client(served: tuple[Courier, str]) -> AsyncIterator[Client]:
    made = Client(*served)
    yield made
    await made.http.aclose()


async def device(courier: Courier, client: Client) -> tuple[Agent, list[dict[str, Any]]]:
    device_id = courier.device_id("box")
    response = await client.http.post("/devices", json={"id": device_id})
    assert response.status_code == 201, response.text
    seen: list[dict[str, Any]] = []
    agent = courier.agent(device_id)

    @agent.handler("software_update")
    async def install(ctx: CommandContext) -> dict[str, Any]:
        seen.append(ctx.args)
        package = await fetch(ctx.args)
        return {"installed": ctx.args["version"], "sha256": hashlib.sha256(package).hexdigest()}

    @agent.handler("lwm2m_file")
    async def transfer(ctx: CommandContext) -> dict[str, Any]:
        seen.append(ctx.args)
        if ctx.args["type"] == "fileupload":
            written = await fetch(ctx.args)
            return {"sha256": hashlib.sha256(written).hexdigest()}
        return await send(ctx.args, DEVICE_LOG)

    @agent.handler("setting")
    async def apply(ctx: CommandContext) -> dict[str, Any]:
        seen.append(ctx.args)
        return {"applied": ctx.args["name"]}

    await agent.start()
    return agent, seen


DEVICE_LOG = os.urandom(70_000)


async def test_a_file_goes_to_a_device_and_another_comes_back(client: Client) -> None:
    courier = client.courier
    agent, seen = await device(courier, client)
    data = os.urandom(300_000)  # larger than the JSON body limit: uploads stream
    stored = await client.upload(data, "config.tar")
    assert stored["size"] == len(data)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()

    created = await client.http.post(
        "/commands",
        json={
            "devices": [agent.device_id],
            "command": "lwm2m_file",
            "args": {"type": "fileupload", "file_id": stored["id"], "filepath": "/etc/c.tar"},
        },
    )
    assert created.status_code == 201, created.text
    pushed = await client.ended(created.json()["executions"][0]["id"])
    assert pushed["state"] == "SUCCEEDED", pushed
    assert pushed["output"] == {"sha256": stored["sha256"]}
    assert seen[0]["sha256"] == stored["sha256"]
    assert seen[0]["size"] == len(data)
    assert seen[0]["url"].startswith(f"http://127.0.0.1:{courier.http_port}/v1/files/")

    created = await client.http.post(
        "/commands",
        json={
            "devices": [agent.device_id],
            "command": "lwm2m_file",
            "args": {"type": "filedownload", "filepath": "/var/log/device.log"},
        },
    )
    fetched = await client.ended(created.json()["executions"][0]["id"])
    assert fetched["state"] == "SUCCEEDED", fetched
    file_id = fetched["output"]["file_id"]
    assert fetched["output"]["sha256"] == hashlib.sha256(DEVICE_LOG).hexdigest()
    meta = (await client.http.get(f"/files/{file_id}")).json()
    assert meta["name"] == "device.log"
    assert meta["execution_id"] == fetched["id"]
    content = await client.http.get(f"/files/{file_id}/content")
    assert content.content == DEVICE_LOG
    assert content.headers["x-checksum-sha256"] == meta["sha256"]

    # The links of those commands are single-purpose: a download link cannot upload.
    async with httpx.AsyncClient() as anonymous:
        download = seen[0]["url"]
        assert (await anonymous.get(download)).content == data
        upload = download.replace("/v1/files/", "/v1/uploads/")
        assert (await anonymous.put(upload, content=b"x")).status_code == 403
        assert (await anonymous.get(download + "x")).status_code == 403


async def test_a_software_update_and_a_setting_reach_the_device(client: Client) -> None:
    courier = client.courier
    agent, seen = await device(courier, client)
    package = os.urandom(120_000)
    stored = await client.upload(package, "fw-2.1.0.bin")
    update = await client.http.post(
        "/software_updates",
        json={"name": "firmware", "version": "2.1.0", "file_id": stored["id"], "target": "box"},
    )
    assert update.status_code == 201, update.text

    response = await client.http.post(
        f"/devices/{agent.device_id}/gateway_commands",
        json={"command_type": "software_update", "software_update_id": update.json()["id"]},
    )
    assert response.status_code == 200, response.text
    installed = await client.ended(response.json()["executions"][0]["id"])
    assert installed["state"] == "SUCCEEDED", installed
    assert installed["output"] == {"installed": "2.1.0", "sha256": stored["sha256"]}
    assert seen[0]["size"] == len(package)
    assert seen[0]["name"] == "firmware"
    assert seen[0]["target"] == "box"  # what the package is for: the device checks it

    # The package cannot go while an update uses it.
    assert (await client.http.delete(f"/files/{stored['id']}")).status_code == 409

    setting = await client.http.post(
        "/settings", json={"name": "telemetry", "document": {"interval": 30}}
    )
    assert setting.status_code == 201, setting.text
    response = await client.http.post(
        f"/devices/{agent.device_id}/gateway_commands",
        json={"command_type": "setting", "setting_id": setting.json()["id"]},
    )
    applied = await client.ended(response.json()["executions"][0]["id"])
    assert applied["state"] == "SUCCEEDED", applied
    assert seen[1]["document"] == {"interval": 30}

"""A simulated LwM2M client behind an EMQX-format LwM2M gateway, for tests and demos.

It answers Courier's requests on `{mount}/{endpoint}/dn/#` the way the EMQX gateway reports
a device's CoAP answers, with an object tree holding Device (/3) and Firmware Update (/5):

    client = SimulatedLwm2mClient("meter-1", broker="mqtt://127.0.0.1:1883")
    await client.start()                 # publishes up/register (presence)
    client.set("/3/0/9", 80)            # a notification if /3/0/9 is observed
    client.fail_next(coap_timeout=1)    # the next request times out

Writing a URL to /5/0/1 (Package URI) downloads the package (kept in `packages`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx
import orjson

from courier.transport import ConnectOptions, Message, Transport
from courier.transport.gmqtt_transport import GmqttTransport

log = logging.getLogger(__name__)

DEVICE_OBJECT: dict[str, Any] = {
    "/3/0/0": "Courier",  # Manufacturer
    "/3/0/1": "simulated-lwm2m",  # Model Number
    "/3/0/2": "SIM-0001",  # Serial Number
    "/3/0/3": "1.0.0",  # Firmware Version
    "/3/0/9": 100,  # Battery Level
    "/3/0/13": 0,  # Current Time
    "/5/0/1": "",  # Package URI
    "/5/0/3": 0,  # State: idle
    "/5/0/5": 0,  # Update Result
}
WRITABLE = frozenset({"/3/0/13", "/5/0/1"})
EXECUTABLE = frozenset({"/3/0/4", "/5/0/2"})  # Reboot, Update
CODES = {
    "2.01": "created",
    "2.02": "deleted",
    "2.04": "changed",
    "2.05": "content",
    "4.00": "bad_request",
    "4.04": "not_found",
    "4.05": "method_not_allowed",
}


class SimulatedLwm2mClient:
    def __init__(
        self,
        endpoint: str,
        broker: str = "mqtt://127.0.0.1:1883",
        mountpoint: str = "lwm2m",
        lifetime: int = 300,
        ack_first: bool = False,
        transport: Transport | None = None,
        password: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.mount = mountpoint
        self.lifetime = lifetime
        self.ack_first = ack_first
        self.values: dict[str, Any] = dict(DEVICE_OBJECT)
        self.instances: set[str] = {"/3/0", "/5/0"}
        self.observed: dict[str, int] = {}  # path -> the reqID of its observe
        self.packages: dict[str, bytes] = {}
        self.requests: list[dict[str, Any]] = []
        self._timeouts = 0
        self._resets = 0
        self._seq = 0
        # With a password it logs in as its endpoint (= its device id), as the broker's ACL
        # expects of the gateway connection that carries this endpoint's topics.
        options = ConnectOptions.from_url(broker, client_id=f"lwm2m-{endpoint}", clean_start=True)
        if password is not None:
            options = replace(options, username=endpoint, password=password)
        self.transport = transport or GmqttTransport(options)
        self.transport.on_message = self._on_message

    def _topic(self, kind: str) -> str:
        return f"{self.mount}/{self.endpoint}/up/{kind}"

    async def start(self) -> None:
        await self.transport.connect()
        await self.transport.subscribe([f"{self.mount}/{self.endpoint}/dn/#"], qos=1)
        self.register()

    async def stop(self) -> None:
        await self.transport.disconnect()

    def register(self, kind: str = "register") -> None:
        """Register (or `update`): Courier takes it as presence and a wake-up."""
        objects = sorted(self.instances)
        data = {"ep": self.endpoint, "lt": self.lifetime, "lwm2m": "1.1", "objectList": objects}
        self._publish(kind, {"msgType": kind, "data": data})

    def fail_next(self, coap_timeout: int = 0, coap_reset: int = 0) -> None:
        """The next requests go unanswered by the device (timeout) or are reset."""
        self._timeouts += coap_timeout
        self._resets += coap_reset

    def set(self, path: str, value: Any) -> None:
        """Change a resource; an observer of it is notified."""
        self.values[path] = value
        for observed, req_id in self.observed.items():
            if path == observed or path.startswith(observed + "/"):
                self._seq += 1
                self._publish(
                    "notify",
                    {
                        "reqID": req_id,
                        "msgType": "notify",
                        "seqNum": self._seq,
                        "data": self._content(observed, "2.05"),
                    },
                )

    # --- requests ----------------------------------------------------------------------

    async def _on_message(self, message: Message) -> None:
        try:
            request = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            log.warning("not JSON on %s", message.topic)
            return
        self.requests.append(request)
        req_id, msg_type = request.get("reqID"), request.get("msgType")
        data = request.get("data") or {}
        path = data.get("path") or data.get("basePath") or ""
        if self.ack_first:
            self._publish("resp", {"reqID": req_id, "msgType": "ack", "data": {"path": path}})
        if self._timeouts:
            self._timeouts -= 1
            answer = {"reqPath": path, "code": "coap_timeout"}
            self._publish("resp", {"reqID": req_id, "msgType": "coap_timeout", "data": answer})
            return
        if self._resets:
            self._resets -= 1
            answer = {"reqPath": path, "code": "coap_reset"}
            self._publish("resp", {"reqID": req_id, "msgType": "coap_reset", "data": answer})
            return
        result = await self._perform(str(msg_type), path, data, req_id)
        self._publish("resp", {"reqID": req_id, "msgType": msg_type, "data": result})

    async def _perform(self, msg_type: str, path: str, data: dict[str, Any], req_id: Any) -> Any:
        if msg_type in ("read", "observe", "cancel-observe", "discover"):
            if not self._exists(path):
                return self._code(path, "4.04")
            if msg_type == "observe":
                self.observed[path] = req_id
            elif msg_type == "cancel-observe":
                self.observed.pop(path, None)
            if msg_type == "discover":
                return {**self._code(path, "2.05"), "content": self._links(path)}
            return self._content(path, "2.05")
        if msg_type == "write":
            return await self._write(data)
        if msg_type == "execute":
            if path not in EXECUTABLE:
                return self._code(path, "4.05" if self._exists(path) else "4.04")
            if path == "/5/0/2":
                self.values["/5/0/3"], self.values["/5/0/5"] = 0, 1  # updated successfully
            return self._code(path, "2.04")
        if msg_type == "write-attr":
            return self._code(path, "2.04" if self._exists(path) else "4.04")
        if msg_type == "create":
            instance = f"{path}/{sum(1 for i in self.instances if i.startswith(path + '/'))}"
            self.instances.add(instance)
            return self._code(instance, "2.01")
        if msg_type == "delete":
            if path not in self.instances:
                return self._code(path, "4.04")
            self.instances.discard(path)
            return self._code(path, "2.02")
        return self._code(path, "4.00")

    async def _write(self, data: dict[str, Any]) -> dict[str, Any]:
        items: Sequence[dict[str, Any]] = [data]
        base = data.get("basePath")
        if base is not None:
            items = [{**i, "path": f"{base}/{i['path'].lstrip('/')}"} for i in data["content"]]
        for item in items:
            if item["path"] not in WRITABLE:
                code = "4.05" if self._exists(item["path"]) else "4.04"
                return self._code(item["path"], code)
        for item in items:
            self.values[item["path"]] = item["value"]
            package = item["path"] == "/5/0/1" and item["value"]
            if package and not await self._download(str(item["value"])):
                return self._code(item["path"], "4.00")
        return self._code(base or items[0]["path"], "2.04")

    async def _download(self, url: str) -> bool:
        self.values["/5/0/3"] = 1  # downloading
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            log.warning("package download failed: %s", exc)
            self.values["/5/0/3"], self.values["/5/0/5"] = 0, 7  # invalid URI
            return False
        if response.status_code != 200:
            self.values["/5/0/3"], self.values["/5/0/5"] = 0, 7
            return False
        self.packages[url] = response.content
        self.values["/5/0/3"] = 2  # downloaded
        return True

    # --- answers -----------------------------------------------------------------------

    def _exists(self, path: str) -> bool:
        return (
            path in self.values
            or path in EXECUTABLE
            or path in self.instances
            or any(p.startswith(path + "/") for p in (*self.values, *self.instances))
        )

    def _code(self, path: str, code: str) -> dict[str, Any]:
        return {"reqPath": path, "code": code, "codeMsg": CODES[code]}

    def _content(self, path: str, code: str) -> dict[str, Any]:
        found = [
            {"path": p, "value": v}
            for p, v in sorted(self.values.items())
            if p == path or p.startswith(path + "/")
        ]
        return {**self._code(path, code), "content": found}

    def _links(self, path: str) -> str:
        found = sorted(p for p in (*self.values, *EXECUTABLE) if p.startswith(path + "/"))
        return ",".join(f"<{p}>" for p in found) or f"<{path}>"

    def _publish(self, kind: str, body: dict[str, Any]) -> None:
        self.transport.publish(self._topic(kind), orjson.dumps(body), qos=1)

"""MQTT ingress: command requests published on P/tenants/{tenant}/requests.

The body is the REST body (plus an optional `client_token`, which works as the REST
Idempotency-Key). With MQTT 5 the answer goes to the message's response topic with its
correlation data: {"status": 201, "request": {...}} or a problem ({"status": 4xx, ...}).
Who may publish for a tenant is the broker's ACL's business (its service user).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import Field, ValidationError

from courier.api.convert import request_out
from courier.errors import CourierError, InvalidInput
from courier.metrics import Metrics
from courier.schemas.api import CommandRequestIn
from courier.schemas.mqtt import describe, parse_json_object
from courier.service import Service
from courier.transport import Message, Transport

log = logging.getLogger(__name__)


class MqttCommandRequestIn(CommandRequestIn):
    client_token: str | None = Field(
        None, min_length=1, max_length=255, description="repeat-safe creation, as Idempotency-Key"
    )


class Ingress:
    """Creates the requests published over MQTT and answers on the response topic."""

    def __init__(self, service: Service, metrics: Metrics, max_payload: int) -> None:
        self.service = service
        self.metrics = metrics
        self.max_payload = max_payload

    async def handle(self, tenant: str, message: Message, transport: Transport) -> None:
        try:
            answer = await self._create(tenant, message)
        except CourierError as exc:
            self.metrics.rejected.labels("requests", exc.slug).inc()
            log.warning("request over MQTT refused: %s", exc.message, extra={"tenant": tenant})
            title = (type(exc).__doc__ or type(exc).__name__).strip().splitlines()[0]
            answer = {
                "status": exc.status,
                "type": f"urn:courier:problem:{exc.slug}",
                "title": title,
                "detail": exc.message,
                **exc.extra,
            }
        if message.response_topic:
            try:
                transport.publish(
                    message.response_topic,
                    orjson.dumps(answer),
                    qos=1,
                    correlation_data=message.correlation_data,
                )
            except CourierError as exc:
                log.warning("could not answer a request over MQTT: %s", exc)

    async def _create(self, tenant: str, message: Message) -> dict[str, Any]:
        value = parse_json_object(message.payload, self.max_payload)
        try:
            body = MqttCommandRequestIn.model_validate(value)
        except ValidationError as exc:
            raise InvalidInput(f"invalid request: {describe(exc)}") from exc
        await self.service.store.get_tenant(tenant)
        fields = body.model_dump(exclude={"client_token"}, exclude_unset=True, by_alias=True)
        created = await self.service.create_command(
            tenant, CommandRequestIn.model_validate(fields), f"mqtt:{tenant}", body.client_token
        )
        out = request_out(created.request, created.executions)
        return {"status": 201, "replayed": created.replayed, "request": out.model_dump(mode="json")}
